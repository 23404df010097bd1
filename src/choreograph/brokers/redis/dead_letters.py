"""The Redis broker's dead-letter store: list, count, read, resubmit, purge or delete.

A mixin of :class:`~choreograph.brokers.redis.RedisBroker`, kept apart so the
broker module stays readable. An entry is a hash (``keys.dead_letter(id)``)
indexed by a sorted set of store times (``keys.dead_letter_index``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

from choreograph.core.broker import DeadLetter
from choreograph.core.clock import Clock
from choreograph.core.enums import DeadLetterStatus
from choreograph.core.errors import NotFound
from choreograph.core.headers import DEAD_LETTER_ID_HEADER

from . import records as rec
from .keys import Keys, entry_id
from .translation import text, translated

_PAGE: Final = 500


class DeadLetterShelf:
    """The :class:`~choreograph.core.broker.DeadLetterStore` half of :class:`RedisBroker`."""

    client: Any
    keys: Keys
    clock: Clock
    _resubmit_script: Any
    _purge_script: Any

    def check_open(self) -> None:
        raise NotImplementedError  # provided by RedisBroker

    async def dead_letters(
        self, *, group: str | None = None, status: str | None = DeadLetterStatus.OPEN, limit: int = 100
    ) -> list[DeadLetter]:
        """Return dead letters, oldest first, filtered by group and status (``None``: any)."""
        self.check_open()
        out: list[DeadLetter] = []
        start = 0
        async with translated("list dead letters"):
            while len(out) < limit:
                ids = await self.client.zrange(self.keys.dead_letter_index, start, start + _PAGE - 1)
                if not ids:
                    break
                start += len(ids)
                pipe = self.client.pipeline(transaction=False)
                for dead_id in ids:
                    pipe.hgetall(self.keys.dead_letter(text(dead_id)))
                for fields in await pipe.execute():
                    if not fields:
                        continue
                    letter = rec.decode_dead_letter(fields)
                    if (group is None or letter.group == group) and (status is None or letter.status == status):
                        out.append(letter)
                        if len(out) >= limit:
                            break
        return out

    async def dead_letter_counts(
        self, *, status: str | None = DeadLetterStatus.OPEN
    ) -> dict[tuple[str, str, str], int]:
        """Return how many dead letters have ``status`` (``None``: any) per (topic, group, reason).

        Reads four small fields of each entry (HMGET), never its value.
        """
        self.check_open()
        counts: dict[tuple[str, str, str], int] = {}
        start = 0
        async with translated("count dead letters"):
            while True:
                ids = await self.client.zrange(self.keys.dead_letter_index, start, start + _PAGE - 1)
                if not ids:
                    break
                start += len(ids)
                pipe = self.client.pipeline(transaction=False)
                for dead_id in ids:
                    pipe.hmget(self.keys.dead_letter(text(dead_id)), ["topic", "group", "reason", "status"])
                for topic, grp, reason, state in await pipe.execute():
                    if topic is None or grp is None or reason is None or state is None:
                        continue  # deleted in the meantime
                    if status is None or text(state) == status:
                        where = (text(topic), text(grp), text(reason))
                        counts[where] = counts.get(where, 0) + 1
        return counts

    async def dead_letter(self, dead_letter_id: str) -> DeadLetter:
        """Return one dead letter; raise NotFound if absent."""
        self.check_open()
        async with translated("read a dead letter"):
            fields = await self.client.hgetall(self.keys.dead_letter(dead_letter_id))
        if not fields:
            raise NotFound(f"no dead letter with id {dead_letter_id!r}")
        return rec.decode_dead_letter(fields)

    async def resubmit(self, dead_letter_id: str, value: bytes | None = None) -> bool:
        """Make the record due again for its group only, at attempt 1; False unless the entry is open.

        The status check-and-set and the scheduling are one Lua script: two
        concurrent resubmissions hand the record back once.
        """
        letter = await self.dead_letter(dead_letter_id)
        group = self.keys.group(letter.topic, letter.group)
        stream_id = entry_id(letter.offset)
        headers = {**letter.headers, DEAD_LETTER_ID_HEADER: letter.id}  # its next dead letter names this one
        packed = rec.pack_record(letter.key, letter.value if value is None else value, headers, self.clock.now())
        async with translated("resubmit a dead letter"):
            done = await self._resubmit_script(
                keys=[
                    self.keys.dead_letter(dead_letter_id),
                    group.retries(letter.partition),
                    group.attempts(letter.partition),
                    group.resubmitted(letter.partition),
                ],
                args=[stream_id, int(self.clock.now() * 1000), rec.encode_attempts(0, None, letter.key), packed],
            )
        if int(done) < 0:
            raise NotFound(f"no dead letter with id {dead_letter_id!r}")
        return int(done) == 1

    async def purge(self, dead_letter_ids: Sequence[str] | None = None, *, delete: bool = False) -> int:
        """Mark open entries purged (all of them if ``None``); return how many changed.

        With ``delete``, remove the entries instead (any status; all if
        ``None``): each one's hash and index entry go in one MULTI. The
        server's append-only file keeps the old commands until its next
        rewrite (``BGREWRITEAOF``, automatic as the file grows).
        """
        self.check_open()
        async with translated("delete dead letters" if delete else "purge dead letters"):
            ids: Iterable[str]
            if dead_letter_ids is None:
                ids = [text(i) for i in await self.client.zrange(self.keys.dead_letter_index, 0, -1)]
            else:
                ids = dead_letter_ids
            count = 0
            for dead_id in ids:
                if delete:
                    async with self.client.pipeline(transaction=True) as pipe:
                        pipe.delete(self.keys.dead_letter(dead_id))
                        pipe.zrem(self.keys.dead_letter_index, dead_id)
                        removed, _ = await pipe.execute()
                    count += int(removed)
                else:
                    count += int(await self._purge_script(keys=[self.keys.dead_letter(dead_id)], args=[]))
        return count
