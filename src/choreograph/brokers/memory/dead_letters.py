"""The in-memory broker's dead-letter store: list, count, resubmit, purge, expire.

A mixin of :class:`~choreograph.brokers.memory.MemoryBroker`, kept apart so the
broker module stays readable; it works on the broker's state and nothing else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from choreograph.brokers.memory._state import _Group, _Pending, _Stored, _Topic
from choreograph.core.broker import DeadLetter
from choreograph.core.clock import Clock
from choreograph.core.enums import DeadLetterStatus
from choreograph.core.errors import NotFound
from choreograph.core.headers import DEAD_LETTER_ID_HEADER


class DeadLetterShelf:
    """The :class:`~choreograph.core.broker.DeadLetterStore` half of :class:`MemoryBroker`."""

    clock: Clock
    dead_letter_retention: float | None
    _dead: dict[str, _Stored]
    _groups: dict[tuple[str, str], _Group]

    def _check_open(self) -> None:
        raise NotImplementedError  # provided by MemoryBroker

    def _topic(self, name: str) -> _Topic:
        raise NotImplementedError  # provided by MemoryBroker

    async def dead_letters(
        self, *, group: str | None = None, status: str | None = DeadLetterStatus.OPEN, limit: int = 100
    ) -> list[DeadLetter]:
        """Return dead letters, oldest first, filtered by group and status (``None``: any)."""
        self._expire_dead_letters()
        out = []
        for stored in self._dead.values():
            letter = stored.letter
            if (group is None or stored.group == group) and (status is None or letter.status == status):
                out.append(letter)
                if len(out) >= limit:
                    break
        return out

    async def dead_letter(self, dead_letter_id: str) -> DeadLetter:
        """Return one dead letter; raise NotFound if absent (deleted or past its retention included)."""
        self._expire_dead_letters()
        return self._stored(dead_letter_id).letter

    async def dead_letter_counts(
        self, *, status: str | None = DeadLetterStatus.OPEN
    ) -> dict[tuple[str, str, str], int]:
        """Return how many dead letters have ``status`` (``None``: any), per (topic, group, reason)."""
        self._expire_dead_letters()
        counts: dict[tuple[str, str, str], int] = {}
        for stored in self._dead.values():
            letter = stored.letter
            if status is None or letter.status == status:
                where = (letter.topic, letter.group, letter.reason)
                counts[where] = counts.get(where, 0) + 1
        return counts

    async def resubmit(self, dead_letter_id: str, value: bytes | None = None) -> bool:
        """Make the record due again for its group only, at attempt 1; False unless the entry is open.

        Keeps topic, partition, offset, key and headers, and adds header
        ``choreograph-dead-letter-id``; ``value`` replaces the bytes.
        """
        self._check_open()
        stored = self._stored(dead_letter_id)
        if stored.letter.status != DeadLetterStatus.OPEN:
            return False
        state = self._groups.get((stored.topic, stored.group))
        if state is None:  # the group vanished with its topic; recreate it at the end of the log
            log = self._topic(stored.topic)
            state = _Group(log, stored.group, [len(e) for e in log.log], [{} for _ in log.log])
            self._groups[(stored.topic, stored.group)] = state
        stored.letter = dataclasses.replace(stored.letter, status=DeadLetterStatus.RESUBMITTED)
        state.pending[stored.partition][stored.offset] = _Pending(
            stored.offset,
            stored.key,
            due=self.clock.now(),
            value=stored.value if value is None else value,
            resubmitted=True,
            headers={**stored.letter.headers, DEAD_LETTER_ID_HEADER: dead_letter_id},
        )
        state.topic.notify()
        return True

    async def purge(self, dead_letter_ids: Sequence[str] | None = None, *, delete: bool = False) -> int:
        """Mark open entries purged (all of them if ``None``); return how many changed.

        With ``delete``, remove the entries (any status; all of them if
        ``None``) and their bytes; return how many were removed.
        """
        wanted = None if dead_letter_ids is None else set(dead_letter_ids)
        if delete:
            doomed = [dead_id for dead_id in self._dead if wanted is None or dead_id in wanted]
            for dead_id in doomed:
                del self._dead[dead_id]
            return len(doomed)
        count = 0
        for dead_id, stored in self._dead.items():
            if stored.letter.status == DeadLetterStatus.OPEN and (wanted is None or dead_id in wanted):
                stored.letter = dataclasses.replace(stored.letter, status=DeadLetterStatus.PURGED)
                count += 1
        return count

    def _expire_dead_letters(self) -> None:
        """Delete dead letters stored longer ago than ``dead_letter_retention`` (insertion order is age order)."""
        if self.dead_letter_retention is None:
            return
        cutoff = self.clock.now() - self.dead_letter_retention
        expired = []
        for dead_id, stored in self._dead.items():
            if stored.stored_at >= cutoff:
                break
            expired.append(dead_id)
        for dead_id in expired:
            del self._dead[dead_id]

    def _stored(self, dead_letter_id: str) -> _Stored:
        stored = self._dead.get(dead_letter_id)
        if stored is None:
            raise NotFound(f"no dead letter with id {dead_letter_id!r}")
        return stored
