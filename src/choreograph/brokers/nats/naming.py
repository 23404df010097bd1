"""Names of the JetStream objects a topic, group and partition map onto.

=========================  ==================================================
choreograph                JetStream
=========================  ==================================================
topic ``T``                stream ``<PREFIX>_T``; metadata keeps ``T`` and its
                           partition count
partition ``p`` of ``T``   subject ``<prefix>.T.p``
group ``G`` on ``T``       durable pull consumer ``G_p<p>`` per partition,
                           filtering ``<prefix>.T.p`` and ``<prefix>.T.p.r.G``
dead letter resubmitted    subject ``<prefix>.T.p.r.G`` (only ``G`` reads it)
inbox key of ``G``         key ``<hash(G)>.<hash(key)>`` in bucket ``<prefix>_inbox``
retry bookkeeping          key ``r.<hash(T, G)>.<p>.<seq>`` in the inbox bucket
                           (first failure time, prefetched-but-returned count)
member / lease             keys ``<hash(T, G)>.m.<member>`` / ``<hash(T, G)>.p.<p>``
                           in bucket ``<prefix>_leases``
dead letter ``D``          key ``D`` in bucket ``<prefix>_dlq``
=========================  ==================================================

``T`` and ``G`` are escaped into one subject token (:func:`token`): letters,
digits and ``-`` stay, ``.`` becomes ``_`` and any other byte (``_``
included) ``~hh``, so the mapping is reversible and never creates extra
tokens or wildcards.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Final

import orjson

from choreograph.core import headers as h
from choreograph.core.errors import ConfigurationError
from choreograph.core.names import subject_token

META_TOPIC: Final = "choreograph_topic"
META_PARTITIONS: Final = "choreograph_partitions"
META_GROUP: Final = "choreograph_group"
META_PARTITION: Final = "choreograph_partition"
MSG_ID_HEADER: Final = "Nats-Msg-Id"
KEY_HEADER: Final = "Choreograph-Key"
"""Transport header carrying a record's partition key."""
HEADERS_HEADER: Final = "Choreograph-Headers"
"""Transport header carrying, as ASCII JSON, the record headers NATS cannot carry as they are."""
OFFSET_HEADER: Final = "Choreograph-Offset"
"""Transport header of a resubmitted dead letter: the offset the record had originally."""


@functools.lru_cache(maxsize=4096)
def token(name: str) -> str:
    """Escape ``name`` into one subject token (and a valid stream/consumer name part). Reversible."""
    if not name:
        raise ConfigurationError("topic and group names must not be empty")
    return subject_token(name)


def untoken(text: str) -> str:
    """Invert :func:`token`."""
    out = bytearray()
    i = 0
    while i < len(text):
        char = text[i]
        if char == "_":
            out.append(ord("."))
        elif char == "~":
            out.append(int(text[i + 1 : i + 3], 16))
            i += 3
            continue
        else:
            out.append(ord(char))
        i += 1
    return out.decode()


def digest(*parts: str) -> str:
    """Return a short stable hex hash of ``parts`` (a KV key segment)."""
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=12).hexdigest()


class Names:
    """Every name derived from one broker prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.stream_prefix = f"{prefix.upper()}_"
        self.inbox_bucket = f"{prefix}_inbox"
        self.lease_bucket = f"{prefix}_leases"
        self.dlq_bucket = f"{prefix}_dlq"

    def stream(self, topic: str) -> str:
        """The stream holding ``topic``."""
        return f"{self.stream_prefix}{token(topic)}"

    def stream_subjects(self, topic: str) -> list[str]:
        """Subjects the topic's stream captures: its partitions and their resubmit subjects."""
        base = f"{self.prefix}.{token(topic)}"
        return [f"{base}.*", f"{base}.*.r.*"]

    def partition_subject(self, topic: str, partition: int) -> str:
        """The subject records of one partition are published to."""
        return f"{self.prefix}.{token(topic)}.{partition}"

    def resubmit_subject(self, topic: str, partition: int, group: str) -> str:
        """The subject a dead letter of ``group`` is resubmitted to (read by that group only)."""
        return f"{self.partition_subject(topic, partition)}.r.{token(group)}"

    def consumer(self, group: str, partition: int) -> str:
        """The durable pull consumer of ``group`` on one partition."""
        return f"{token(group)}_p{partition}"

    def pair(self, topic: str, group: str) -> str:
        """The KV key segment of a (topic, group) pair."""
        return digest(topic, group)

    def inbox_key(self, group: str, key: str) -> str:
        """The inbox bucket key of a dedupe key of ``group``."""
        return f"{self.inbox_group(group)}{digest(key)}"

    def inbox_group(self, group: str) -> str:
        """What the inbox bucket keys of ``group`` start with."""
        return f"{digest(group)}."

    def record_key(self, pair: str, partition: int, seq: int) -> str:
        """The inbox bucket key holding a record's retry bookkeeping for one group."""
        return f"r.{pair}.{partition}.{seq}"


_LINE_BREAKS: Final = str.maketrans("\r\n", "  ")
_ENCODED_HEAD = b'{"specversion":"1.0","id":"'
_ENCODED_SOURCE = b'","source":"'


def message_id(value: bytes, fallback: str) -> str:
    """Return the ``Nats-Msg-Id`` of a record: ``source/id`` of its envelope, else ``fallback``.

    Envelope-derived ids make a repeated publish of the same event (a retried
    publish, a handler re-run after a crash) a no-op inside the stream's
    duplicate window. Other bytes get ``fallback`` (unique per publish call),
    so identical raw payloads published twice are both kept.
    """
    if value.startswith(_ENCODED_HEAD):  # our codec's layout: read id and source without parsing it all
        head = len(_ENCODED_HEAD)
        end = value.find(b'"', head)
        if end > head and value.startswith(_ENCODED_SOURCE, end):
            start = end + len(_ENCODED_SOURCE)
            stop = value.find(b'"', start)
            pair = value[start:stop] + b"/" + value[head:end]
            # No escapes (the JSON value would differ from its bytes), and one header line.
            if stop > start and b"\\" not in pair and b"\n" not in pair and b"\r" not in pair:
                try:
                    return pair.decode()
                except UnicodeDecodeError:
                    pass  # not JSON at all: the fallback below
    if value[:1] != b"{":
        return fallback
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return fallback
    source, event_id = doc.get(h.SOURCE), doc.get(h.ID)
    if isinstance(source, str) and isinstance(event_id, str) and source and event_id:
        return f"{source}/{event_id}".translate(_LINE_BREAKS)  # a header value is one line
    return fallback


# \Z, not $: "$" also matches before a final line break, which must not reach a header line.
_SAFE_NAME = re.compile(r"^[!-9;-~]+\Z")
_SAFE_VALUE = re.compile(r"^[!-~]([ -~]*[!-~])?\Z")
_RESERVED = ("nats-", "choreograph-")


def to_wire(headers: Mapping[str, str], key: str | None) -> dict[str, str]:
    """Return NATS headers for a record's ``headers`` and ``key``; lossless for any unicode.

    Headers with a printable-ASCII name and value travel as they are; the
    rest (and a non-ASCII key) travel JSON-encoded in one ASCII header.
    """
    out: dict[str, str] = {}
    packed: dict[str, str] = {}
    for name, value in headers.items():
        if _SAFE_NAME.match(name) and _SAFE_VALUE.match(value) and not name.lower().startswith(_RESERVED):
            out[name] = value
        else:
            packed[name] = value
    if key is not None:
        if _SAFE_VALUE.match(key):
            out[KEY_HEADER] = key
        else:
            packed[KEY_HEADER] = key
    if packed:
        out[HEADERS_HEADER] = json.dumps(packed, ensure_ascii=True, separators=(",", ":"))
    return out


_TRANSPORT = frozenset({MSG_ID_HEADER, KEY_HEADER, HEADERS_HEADER, OFFSET_HEADER})


def from_wire(wire: Mapping[str, str] | None) -> tuple[dict[str, str], str | None]:
    """Invert :func:`to_wire`: return (headers, key), dropping transport headers."""
    if not wire:
        return {}, None
    key = wire.get(KEY_HEADER)
    if len(wire) == (key is not None) + (MSG_ID_HEADER in wire):  # only the usual transport headers
        return {}, key
    headers = {name: value for name, value in wire.items() if name not in _TRANSPORT and not name.startswith("Nats-")}
    packed = wire.get(HEADERS_HEADER)
    if packed:
        extra: dict[str, str] = json.loads(packed)
        key = extra.pop(KEY_HEADER, key)
        headers.update(extra)
    return headers, key
