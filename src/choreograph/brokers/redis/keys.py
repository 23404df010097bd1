"""Key names and stream ids of the Redis broker.

Every key of one topic — its partition streams, and the state of every
consumer group on it — carries the hash tag ``{topic}``, so on Redis Cluster
they live in one slot and a group's settlement touches one node (plus the
slots of the topics it publishes to and of the dead-letter store).

Offsets are dense per partition (0, 1, 2, ...), like Kafka's: the record at
offset ``n`` has the explicit stream id ``{n+1}-0``. The publish script hands
out offsets from a per-partition counter, so an offset maps to an id without
a lookup, lag is a subtraction, and a replay position is exact.

Another client may still add entries (``XADD <stream> *``): their ids are
``<ms>-<seq>``. The publish script then continues above them, so offsets stay
increasing (with a gap). Such an entry is delivered as a fault (see
:mod:`.records`) with the offset :func:`record_offset` gives it — ``ms - 1``
when ``seq`` is 0, else a negative number that :func:`entry_id` maps back to
the exact id, so it can be acknowledged or dead-lettered like any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

_SEQ_BITS: Final = 64
_SEQ_MASK: Final = (1 << _SEQ_BITS) - 1


def entry_id(offset: int) -> str:
    """Return the stream id of the record at ``offset`` (the inverse of :func:`record_offset`)."""
    if offset >= 0:
        return f"{offset + 1}-0"
    packed = -offset - 1
    return f"{packed >> _SEQ_BITS}-{packed & _SEQ_MASK}"


def record_offset(stream_id: bytes | str) -> int:
    """Return the offset of the delivery of the entry ``stream_id``, whoever added it.

    ``<n>-0`` (ours, or a foreign id of that form) is offset ``n - 1``; a
    foreign ``<ms>-<seq>`` with ``seq`` > 0 is a negative offset unique to it.
    Raises ValueError for a text that is not a stream id.
    """
    text = stream_id.decode("ascii") if isinstance(stream_id, bytes) else stream_id
    ms, _, seq = text.partition("-")
    if not (ms.isascii() and ms.isdigit() and seq.isascii() and seq.isdigit()):
        raise ValueError(f"not a stream id: {text!r}")
    if int(seq) == 0:
        return int(ms) - 1
    return -((int(ms) << _SEQ_BITS) | (int(seq) & _SEQ_MASK)) - 1


def offset_of(stream_id: bytes | str) -> int:
    """Return the offset of the record with ``stream_id`` (the inverse of :func:`entry_id`)."""
    if isinstance(stream_id, bytes):
        return int(stream_id.partition(b"-")[0]) - 1  # int() reads ASCII digits from bytes as well
    return int(stream_id.partition("-")[0]) - 1


def last_delivered_before(offset: int) -> str:
    """Return the group id that makes ``offset`` the next record delivered (XGROUP CREATE / SETID)."""
    return f"{offset}-0"


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under one prefix.

    Keys cannot collide: topic and group names follow :mod:`choreograph.core.names`
    (letters, digits, ``.``, ``_``, ``-``), so they hold neither a brace, which
    would move a key's hash tag, nor a ``:``, which separates the key's parts;
    each key is its prefix, the ``{topic}`` tag, then fixed ``:``-separated
    parts, and reads back to exactly one (topic, group, partition). The
    property test ``tests/brokers/redis/test_redis_keys.py`` checks it.
    """

    prefix: str

    @property
    def topics(self) -> str:
        """Hash: topic name -> partition count."""
        return f"{self.prefix}:topics"

    @property
    def epoch(self) -> str:
        """String: the deployment marker, a random id set when the first structures are created.

        Its tag ``{meta}`` cannot clash: a topic's keys all go on past the tag (``:p0``, ``:groups``...).
        """
        return f"{self.prefix}:{{meta}}:epoch"

    def _topic(self, topic: str) -> str:
        return f"{self.prefix}:{{{topic}}}"

    def stream(self, topic: str, partition: int) -> str:
        """Stream of one partition."""
        return f"{self._topic(topic)}:p{partition}"

    def stream_meta(self, topic: str, partition: int) -> str:
        """Hash of one partition: ``n`` next offset, ``t`` newest timestamp."""
        return f"{self._topic(topic)}:p{partition}:meta"

    def groups(self, topic: str) -> str:
        """Set of the consumer groups of a topic."""
        return f"{self._topic(topic)}:groups"

    def group(self, topic: str, group: str) -> GroupKeys:
        """Keys of one consumer group on one topic."""
        return GroupKeys(f"{self._topic(topic)}:g:{group}")

    @property
    def dead_letter_index(self) -> str:
        """Sorted set of dead letter ids by the time they were stored."""
        return f"{self.prefix}:{{dead-letters}}:index"

    def dead_letter(self, dead_letter_id: str) -> str:
        """Hash of one dead letter."""
        return f"{self.prefix}:{{dead-letters}}:letter:{dead_letter_id}"


@dataclass(frozen=True, slots=True)
class GroupKeys:
    """Key names of one consumer group on one topic (all in the topic's hash slot)."""

    base: str

    @property
    def members(self) -> str:
        """Sorted set: member id -> heartbeat expiry (ms)."""
        return f"{self.base}:members"

    @property
    def leases(self) -> str:
        """Hash: partition -> ``member|expiry_ms``."""
        return f"{self.base}:leases"

    @property
    def generation(self) -> str:
        """Counter bumped on every change of membership or ownership."""
        return f"{self.base}:generation"

    @property
    def inbox(self) -> str:
        """Sorted set: dedupe key -> time remembered."""
        return f"{self.base}:inbox"

    def retries(self, partition: int) -> str:
        """Sorted set: stream id -> due time (ms) of records waiting for a retry."""
        return f"{self.base}:p{partition}:retries"

    def attempts(self, partition: int) -> str:
        """Hash: stream id -> ``attempt|first_failure|key`` of records that failed at least once."""
        return f"{self.base}:p{partition}:attempts"

    def resubmitted(self, partition: int) -> str:
        """Hash: stream id -> packed record of a resubmitted dead letter (its bytes may be edited)."""
        return f"{self.base}:p{partition}:resubmitted"
