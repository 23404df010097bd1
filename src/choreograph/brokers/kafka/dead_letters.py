"""The Kafka broker's dead-letter store: list, count, read, resubmit, purge or delete.

A mixin of :class:`~choreograph.brokers.kafka.KafkaBroker`, kept apart so the
broker module stays readable. Entries are rows of the compacted state topic
(:mod:`.state`, encoded by :mod:`.letters`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Sequence

from choreograph.core.broker import DeadLetter, Record
from choreograph.core.enums import DeadLetterStatus
from choreograph.core.errors import NotFound
from choreograph.core.headers import DEAD_LETTER_ID_HEADER

from .letters import chunk_keys, decode_letter, letter_rows
from .state import StateTable
from .translation import RESUBMIT_GROUP_HEADER, RESUBMIT_OFFSET_HEADER, translated


class DeadLetterShelf:
    """The :class:`~choreograph.core.broker.DeadLetterStore` half of :class:`KafkaBroker`."""

    _resubmit_lock: asyncio.Lock

    async def state(self, *, fresh: bool = True) -> StateTable:
        raise NotImplementedError  # provided by KafkaBroker

    async def send(self, topic: str, records: Sequence[Record], *, partition: int | None = None,
                   extra_headers: dict[str, str] | None = None) -> None:  # fmt: skip
        raise NotImplementedError  # provided by KafkaBroker

    async def store_dead_letters(self, letters: Sequence[DeadLetter]) -> list[tuple[str, bytes | None]]:
        """Return the state rows that store ``letters``."""
        return [row for letter in letters for row in letter_rows(letter)]

    async def dead_letters(
        self, *, group: str | None = None, status: str | None = DeadLetterStatus.OPEN, limit: int = 100
    ) -> list[DeadLetter]:
        """Return dead letters, oldest first, filtered by group and status (``None``: any)."""
        state = await self.state()
        out = []
        for key, raw in list(state.rows.items()):
            if not key.startswith("dl|"):
                continue
            letter = decode_letter(raw, state.rows)
            if (group is None or letter.group == group) and (status is None or letter.status == status):
                out.append(letter)
                if len(out) >= limit:
                    break
        return out

    async def dead_letter_counts(
        self, *, status: str | None = DeadLetterStatus.OPEN
    ) -> dict[tuple[str, str, str], int]:
        """Return how many dead letters have ``status`` (``None``: any) per (topic, group, reason).

        The state table already holds the entries; each is parsed in turn and none is kept.
        """
        state = await self.state()
        counts: dict[tuple[str, str, str], int] = {}
        for key, raw in list(state.rows.items()):
            if key.startswith("dl|"):
                doc = json.loads(raw)
                if status is None or doc["status"] == status:
                    where = (doc["topic"], doc["group"], doc["reason"])
                    counts[where] = counts.get(where, 0) + 1
        return counts

    async def dead_letter(self, dead_letter_id: str) -> DeadLetter:
        """Return one dead letter; raise NotFound if absent."""
        state = await self.state()
        raw = state.rows.get(f"dl|{dead_letter_id}")
        if raw is None:
            raise NotFound(f"no dead letter with id {dead_letter_id!r}")
        return decode_letter(raw, state.rows)

    async def resubmit(self, dead_letter_id: str, value: bytes | None = None) -> bool:
        """Append the record again to its partition, for its group only; False unless the entry is open.

        Serialised within this process; Kafka has no compare-and-set, so two
        processes resubmitting the same letter at the same instant can both
        succeed — the group's inbox then drops the second copy (same event id).
        """
        async with self._resubmit_lock:
            letter = await self.dead_letter(dead_letter_id)
            if letter.status != DeadLetterStatus.OPEN:
                return False
            headers = {**letter.headers, DEAD_LETTER_ID_HEADER: letter.id}  # its next dead letter names this one
            record = Record(letter.value if value is None else value, letter.key, headers)
            marks = {RESUBMIT_GROUP_HEADER: letter.group, RESUBMIT_OFFSET_HEADER: str(letter.offset)}
            await self.send(letter.topic, [record], partition=letter.partition, extra_headers=marks)
            state = await self.state()
            async with translated("mark a dead letter resubmitted"):
                await state.write(letter_rows(dataclasses.replace(letter, status=DeadLetterStatus.RESUBMITTED)))
            return True

    async def purge(self, dead_letter_ids: Sequence[str] | None = None, *, delete: bool = False) -> int:
        """Mark open entries purged (all of them if ``None``); return how many changed.

        With ``delete``, remove the entries instead (any status; all if
        ``None``): a tombstone per entry on the compacted state topic. Readers
        stop seeing them at once; the broker drops the old records at its next
        compaction of the topic (``delete.retention.ms`` and segment rolling decide when).
        """
        state = await self.state()
        rows: list[tuple[str, bytes | None]] = []
        wanted = None if dead_letter_ids is None else set(dead_letter_ids)
        for key, raw in list(state.rows.items()):
            if not key.startswith("dl|") or (wanted is not None and key[3:] not in wanted):
                continue
            if delete:
                rows += [(chunk, None) for chunk in chunk_keys(state.rows, key[3:])]  # the value's chunks, if any
                rows.append((key, None))
                continue
            letter = decode_letter(raw, state.rows)
            if letter.status == DeadLetterStatus.OPEN:
                rows += letter_rows(dataclasses.replace(letter, status=DeadLetterStatus.PURGED))
        async with translated("purge dead letters"):
            await state.write(rows)
        return sum(1 for key, _ in rows if key.startswith("dl|"))
