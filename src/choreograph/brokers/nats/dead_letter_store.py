"""The NATS broker's dead-letter store: list, count, read, resubmit, purge or delete.

A mixin of :class:`~choreograph.brokers.nats.NatsBroker`, kept apart so the
broker module stays readable. The entries live in a key-value bucket
(:class:`.dead_letters.DeadLetterBucket`); this half checks the connection and
republishes resubmitted records.
"""

from __future__ import annotations

from collections.abc import Sequence

from nats.js.client import JetStreamContext

from choreograph.brokers.nats import naming as n
from choreograph.brokers.nats.dead_letters import DeadLetterBucket
from choreograph.brokers.nats.publisher import Message
from choreograph.core.broker import DeadLetter
from choreograph.core.enums import DeadLetterStatus
from choreograph.core.errors import BrokerClosed
from choreograph.core.headers import DEAD_LETTER_ID_HEADER


class DeadLetterShelf:
    """The :class:`~choreograph.core.broker.DeadLetterStore` half of :class:`NatsBroker`."""

    names: n.Names
    _dlq: DeadLetterBucket | None

    async def _ready(self) -> JetStreamContext:
        raise NotImplementedError  # provided by NatsBroker

    async def _topic(self, topic: str, *, create: bool = True) -> int:
        raise NotImplementedError  # provided by NatsBroker

    async def send_acked(self, messages: Sequence[Message], action: str, deadline: float | None = None) -> None:
        raise NotImplementedError  # provided by NatsBroker (see .publishing)

    def _letters(self) -> DeadLetterBucket:
        if self._dlq is None:
            raise BrokerClosed("the NATS broker is not connected")
        return self._dlq

    async def dead_letters(
        self, *, group: str | None = None, status: str | None = DeadLetterStatus.OPEN, limit: int = 100
    ) -> list[DeadLetter]:
        """Return dead letters, oldest first, filtered by group and status (``None``: any)."""
        await self._ready()
        letters = await self._letters().scan()
        return [
            letter
            for letter in letters
            if (group is None or letter.group == group) and (status is None or letter.status == status)
        ][:limit]

    async def dead_letter_counts(
        self, *, status: str | None = DeadLetterStatus.OPEN
    ) -> dict[tuple[str, str, str], int]:
        """Return how many dead letters have ``status`` (``None``: any) per (topic, group, reason); keeps none."""
        await self._ready()
        return await self._letters().counts(status)

    async def dead_letter(self, dead_letter_id: str) -> DeadLetter:
        """Return one dead letter; raise NotFound if absent."""
        await self._ready()
        letter, _ = await self._letters().load(dead_letter_id)
        return letter

    async def resubmit(self, dead_letter_id: str, value: bytes | None = None) -> bool:
        """Hand the record back to its group only, as a new record at attempt 1; False unless open.

        Idempotent: the publish carries ``Nats-Msg-Id = dlq/<id>`` and the
        status flips by compare-and-set.
        """
        await self._ready()
        store = self._letters()
        letter, revision = await store.load(dead_letter_id)
        if letter.status != DeadLetterStatus.OPEN:
            return False
        await self._topic(letter.topic)
        headers = n.to_wire({**letter.headers, DEAD_LETTER_ID_HEADER: letter.id}, letter.key)
        headers[n.MSG_ID_HEADER] = f"dlq/{letter.id}"
        headers[n.OFFSET_HEADER] = str(letter.offset)
        subject = self.names.resubmit_subject(letter.topic, letter.partition, letter.group)
        await self.send_acked([(subject, letter.value if value is None else value, headers)], "resubmit")
        return await store.set_status(letter, revision, DeadLetterStatus.RESUBMITTED)

    async def purge(self, dead_letter_ids: Sequence[str] | None = None, *, delete: bool = False) -> int:
        """Mark open entries purged (all open ones if ``None``); return how many changed.

        With ``delete``, erase the entries instead (any status; all if ``None``):
        every revision of each is purged from the dead-letter bucket's stream.
        Returns how many went.
        """
        await self._ready()
        if delete:
            return await self._letters().delete(dead_letter_ids)
        return await self._letters().purge(dead_letter_ids)
