"""Moving a consumer group's committed positions: the ``GroupAdmin`` capability behind ``choreograph replay``.

A backend that implements :class:`GroupAdmin` can reset what a consumer group
has committed on one topic to the earliest retained record, the log's end, the
first record at or after a time, or explicit offsets per partition (the forms
of :class:`~choreograph.core.broker.Position`). Every backend keeps the same
semantics:

* **What moves.** For every partition of the topic the group's next record
  becomes the resolved offset. Retries the group had scheduled on the topic
  and the records it had read but not settled are dropped with the old
  position: after the reset the group owes exactly the records from the new
  position on. Its inbox (the dedupe keys of what it handled) is kept, so a
  handler seeing an event again after a reset backwards drops it as a
  duplicate unless the caller clears the inbox on purpose — replay into a new
  group to have events handled again. Dead letters are kept.
* **Running members are fenced.** A settle of a delivery fetched before the
  reset is refused as a whole (``BrokerError``, a :class:`~choreograph.core.errors.LeaseLost`
  on the backends with leases): none of its acks, retries, dead letters,
  outputs or inbox keys apply, so no commit of the old position lands on top of
  the new one. The runtime's consumer answers such an error by leaving and
  rejoining the group (after ``resubscribe_delay``), and reads on from the new
  position. Handler side effects outside the broker did happen; they are at
  least once, as always.
* **When it takes effect.** On the in-process and SQLite backends at the
  members' next fetch; on Redis and NATS when the members notice their leases
  are gone (their next settle or lease renewal, at most ``lease_timeout``);
  Kafka refuses a reset while the group has live members (its group
  coordinator would let them commit over it), so stop the workers first.
* **Idempotent.** Resetting twice to the same position is the same as once. A
  reset of a group that never read the topic creates the group there at that
  position, which is how a replay into a new group starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from choreograph.core.broker import Position
from choreograph.core.errors import ChoreographError


class GroupActive(ChoreographError):
    """The backend cannot reset a group while it has live members (Kafka); stop its workers first."""


@dataclass(frozen=True, slots=True)
class PartitionReset:
    """Where one partition of a group was, and where a reset puts it."""

    topic: str
    group: str
    partition: int
    before: int | None
    """The group's committed position before the reset (None: the group had none on this partition)."""
    after: int
    """The first offset the group reads after the reset."""


@runtime_checkable
class GroupAdmin(Protocol):
    """Capability: reset a consumer group's committed positions on a topic (see the module for the semantics)."""

    async def reset_group(self, topic: str, group: str, to: Position) -> Sequence[PartitionReset]:
        """Move ``group``'s positions on every partition of ``topic`` to ``to``; return them per partition.

        Raises UnknownTopic if the topic does not exist, and GroupActive if
        the backend cannot reset while the group has live members (Kafka).
        """
        ...

    async def group_positions(self, topic: str, group: str) -> dict[int, int]:
        """Return partition -> the group's next offset to read on ``topic`` (empty: the group never read it)."""
        ...
