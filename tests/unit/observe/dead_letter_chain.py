"""Dead letters on any backend: counted without their bytes, and a retry that fails again names its predecessor."""

from __future__ import annotations

import uuid
from collections import Counter

from choreograph import App, Context, Event, Reject
from choreograph.core.broker import DeadLetter, DeadLetterCounter, DeadLetterStore
from tests.conftest import wait_until

RUN = uuid.uuid4().hex[:8]


class Refused(Event, type=f"dlchain.refused.{RUN}"):
    n: int


async def _letters(broker: DeadLetterStore, count: int) -> list[DeadLetter]:
    async def enough() -> bool:
        return len(await broker.dead_letters(status=None)) >= count

    await wait_until(enough, 60, f"{count} dead letters")
    return await broker.dead_letters(status=None)


async def dead_letter_chain(url: str) -> None:
    """Run the scenario against the broker at ``url``; raise AssertionError if it goes wrong."""
    app = App("dlchain", broker=url)

    @app.service("picky").on(Refused)
    async def refuse(event: Refused, ctx: Context) -> None:
        raise Reject(f"{event.n} refused")

    broker = app.broker
    assert isinstance(broker, DeadLetterStore) and isinstance(broker, DeadLetterCounter)
    await app.start()
    try:
        # Given two dead letters, one resubmitted and failing again
        await app.publish(Refused(n=1))
        await app.publish(Refused(n=2))
        first = next(d for d in await _letters(broker, 2) if d.event_type == Refused.event_type())
        assert await broker.resubmit(first.id)
        again = next(d for d in await _letters(broker, 3) if d.id != first.id and d.event_id == first.event_id)
        # Then the new dead letter names the first, and counts match the entries
        assert again.predecessor == first.id
        assert (await broker.dead_letter(again.id)).predecessor == first.id
        everything = [d for d in await broker.dead_letters(status=None) if d.topic == Refused.topic()]
        counts = {k: v for k, v in (await broker.dead_letter_counts(status=None)).items() if k[0] == Refused.topic()}
        assert (
            counts
            == Counter((d.topic, d.group, d.reason) for d in everything)
            == {(Refused.topic(), "picky.refuse", "reject"): 3}
        )
        open_counts = await broker.dead_letter_counts()
        assert open_counts[(Refused.topic(), "picky.refuse", "reject")] == 2
    finally:
        await app.close()
