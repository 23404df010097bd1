"""Sequenced parking on a real backend: later events of a failing key wait, and leave in order.

:func:`sequenced_parking` runs an App with one :class:`~choreograph.runtime.parking.Sequenced`
handler on the given broker and checks, per partition key:

* a key whose event is in a delayed retry parks its later events, and the
  retry's success releases them in publish order;
* a key whose event is dead-lettered parks its later events (even ones
  published afterwards) until an operator retries the dead letter, then all of
  them are handled in order, and the key is unblocked;
* other keys flow meanwhile.

Any backend that :func:`~choreograph.runtime.parking.supports_parking` must pass it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from choreograph.core.broker import Broker, DeadLetter, DeadLetterStore
from choreograph.core.event import Event
from choreograph.runtime.app import App
from choreograph.runtime.context import Context
from choreograph.runtime.parking import PARKED_REASON, Sequenced, SequencedParking, supports_parking
from choreograph.runtime.retry import RetryPolicy


class Credit(Event, type="conformance.parking.credit"):
    """One credit to an account; the account is the partition key."""

    account: str
    n: int


async def _until(condition: Callable[[], bool | Awaitable[bool]], timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


async def sequenced_parking(broker: Broker, *, timeout: float = 60.0) -> None:
    """Run the scenario on ``broker`` (left open); raise AssertionError if order or release goes wrong."""
    assert supports_parking(broker), f"{type(broker).__name__} cannot park"
    assert isinstance(broker, DeadLetterStore)
    store: DeadLetterStore = broker
    parking = SequencedParking(broker)
    app = App("parking", broker=broker)
    app.use(parking)
    handled: list[tuple[str, int]] = []
    broken = {1}
    flaky = {20}
    policy = RetryPolicy(immediate=0, delayed=1, base_delay=0.2, max_delay=0.2, jitter=0)

    @app.service("ledger").on(Credit, options=[Sequenced()], retry=policy)
    async def apply(event: Credit, ctx: Context) -> None:
        if event.n in broken:
            raise RuntimeError(f"credit {event.n} cannot be applied")
        if event.n in flaky:
            flaky.discard(event.n)
            raise RuntimeError(f"credit {event.n} failed once")
        handled.append((event.account, event.n))

    def seen(account: str) -> list[int]:
        return [n for a, n in handled if a == account]

    async def letters(account: str) -> list[DeadLetter]:
        return [d for d in await store.dead_letters(limit=100_000) if d.key == account]

    async def publish(account: str, *numbers: int) -> None:
        for n in numbers:
            await app.publish(Credit(account=account, n=n), key=account)

    group = app.handlers[0].group
    await app.start()
    try:
        # Given a key in a delayed retry, one dead-lettered, and one that works
        await publish("b", 20, 21, 22)
        await publish("a", 1, 2, 3)
        await publish("c", 30, 31)
        # Then the retried key's events are handled in order once its retry succeeds, and the other key flows
        await _until(lambda: seen("b") == [20, 21, 22] and seen("c") == [30, 31], timeout, "keys b and c handled")

        async def a_parked(count: int) -> bool:
            found = await letters("a")
            return sum(d.reason == PARKED_REASON for d in found) == count and len(found) == count + 1

        # And the dead-lettered key's later events are parked, including one published afterwards
        await _until(lambda: a_parked(2), timeout, "key a: one dead letter, two parked")
        await publish("a", 4)
        await _until(lambda: a_parked(3), timeout, "key a: the late event parked too")
        assert seen("a") == [], f"key a handled while blocked: {seen('a')}"
        [blocker] = [d for d in await letters("a") if d.reason != PARKED_REASON]
        assert await parking.blocker(group, "a") == blocker.event_id

        # When the bug is fixed and the operator retries the blocking dead letter
        broken.clear()
        assert await store.resubmit(blocker.id)
        # Then every event of the key is handled, in publish order, and the key is unblocked
        await _until(lambda: seen("a") == [1, 2, 3, 4], timeout, "key a released in order")
        await _until(lambda: _unblocked(parking, group, "a"), timeout, "key a unblocked")
        await publish("a", 5)
        await _until(lambda: seen("a") == [1, 2, 3, 4, 5], timeout, "key a flowing again")
        assert seen("b") == [20, 21, 22]
        assert seen("c") == [30, 31]
        assert await letters("a") == [], "open dead letters left for key a"
    finally:
        await app.close()


async def _unblocked(parking: SequencedParking, group: str, key: str) -> bool:
    return await parking.blocker(group, key) is None
