"""Per-record retry bookkeeping of a group: first failure time and returned-unhandled count.

JetStream counts every delivery of a record to a consumer (``num_delivered``),
including records a member prefetched but handed back unhandled when it gave
a partition up or left. choreograph's ``attempt`` should not count those, and
JetStream keeps no failure time, so a record that needed either gets one
small entry ``r.<pair>.<p>.<seq>`` in the inbox bucket::

    {"f": <first failure, epoch seconds, or null>, "s": <times returned unhandled>}

``attempt = num_delivered - s``. Only records that were retried or handed
back have an entry, so the common path (first delivery, acked) never touches
it; it is dropped when the record is acked or dead-lettered, and expires with
the inbox otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from nats.aio.client import Client

from choreograph.brokers.nats import direct
from choreograph.brokers.nats.publisher import Message
from choreograph.brokers.nats.translation import translated


@dataclass(frozen=True, slots=True)
class Entry:
    """Bookkeeping of one record."""

    first_failure: float | None = None
    returned: int = 0


Send = Callable[[Sequence[Message], str], Awaitable[None]]
"""Stores messages and waits until all are acknowledged (``NatsBroker.send_acked``)."""


class Bookkeeping:
    """Reads and writes the bookkeeping entries of one (topic, group)."""

    def __init__(self, nc: Client, send: Send, *, bucket: str, pair: str, timeout: float) -> None:
        self._nc = nc
        self._send = send
        self._bucket = bucket
        self._pair = pair
        self._timeout = timeout

    def _subject(self, partition: int, seq: int) -> str:
        return f"$KV.{self._bucket}.r.{self._pair}.{partition}.{seq}"

    async def read(self, records: Sequence[tuple[int, int]]) -> dict[tuple[int, int], Entry]:
        """Return the entries of (partition, seq) ``records`` that have one: one batched request."""
        if not records:
            return {}
        subjects = {self._subject(p, seq): (p, seq) for p, seq in records}
        with translated("record bookkeeping lookup"):
            found = await direct.last_values(self._nc, f"KV_{self._bucket}", list(subjects), self._timeout)
        out = {}
        for subject, stored in found.items():
            if stored.deleted or not stored.data or subject not in subjects:
                continue
            doc = json.loads(stored.data)
            out[subjects[subject]] = Entry(doc.get("f"), int(doc.get("s", 0)))
        return out

    async def write(self, entries: dict[tuple[int, int], Entry]) -> None:
        """Store ``entries`` (pipelined) and wait until all are stored."""
        if entries:
            await self._send(
                [
                    (self._subject(p, seq), json.dumps({"f": entry.first_failure, "s": entry.returned}).encode(), None)
                    for (p, seq), entry in entries.items()
                ],
                "record bookkeeping write",
            )

    async def count_returned(self, records: Sequence[tuple[int, int]]) -> None:
        """Add one to the returned-unhandled count of ``records`` (before they are nak'ed)."""
        if not records:
            return
        known = await self.read(records)
        await self.write(
            {
                where: Entry(known.get(where, Entry()).first_failure, known.get(where, Entry()).returned + 1)
                for where in records
            }
        )

    async def forget(self, records: Sequence[tuple[int, int]]) -> None:
        """Drop the entries of finished ``records`` (fire and forget: they expire anyway)."""
        with translated("record bookkeeping cleanup"):
            for p, seq in records:
                await self._nc.publish(self._subject(p, seq), b"", headers={direct.KV_OPERATION: "DEL"})
