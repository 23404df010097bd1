"""The harness consumer: fetch, handle, settle — recorded, with chosen failures.

The conformance suite plays the consumer itself, at the broker level, so it
does not depend on the runtime. A :class:`Consumer` drives one
:class:`~choreograph.testing.history.RecordingSubscription`; ``decide`` says
per delivery whether the "handler" succeeds (``None``: ack) or fails (a retry
delay in seconds).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from choreograph.core.broker import Delivery, Settlement
from choreograph.testing.history import RecordingSubscription, message_id

Decide = Callable[[Delivery], float | None]
"""Return ``None`` to ack a delivery, or a delay in seconds to retry it."""


def always_ack(delivery: Delivery) -> float | None:
    """Succeed on every delivery."""
    return None


def dedupe_key(delivery: Delivery) -> str:
    """The inbox key the harness uses for a delivery: its message id."""
    return message_id(delivery.headers, delivery.value)


class Consumer:
    """One harness consumer on one subscription. Use from one task at a time."""

    def __init__(
        self,
        sub: RecordingSubscription,
        *,
        batch: int = 50,
        decide: Decide = always_ack,
        inbox: bool = False,
        fetch_timeout: float = 0.05,
        look_ahead: bool = False,
    ) -> None:
        self.sub = sub
        self.batch = batch
        self.decide = decide
        self.inbox = inbox
        self.fetch_timeout = fetch_timeout
        self.look_ahead = look_ahead
        """In :meth:`run_until`, fetch (and look up) the next batch while the last one settles."""

    async def fetch(self, timeout: float | None = None) -> Sequence[Delivery]:
        """Fetch one batch (recorded) without settling it."""
        return await self.sub.fetch(self.batch, self.fetch_timeout if timeout is None else timeout)

    def handle(self, deliveries: Sequence[Delivery], already: set[str] | None = None) -> Settlement:
        """Run the "handler" on ``deliveries`` (recorded) and return the settlement to apply."""
        settlement = Settlement()
        for delivery in deliveries:
            key = dedupe_key(delivery)
            if already is not None and key in already:
                settlement.acks.append(delivery)
                continue
            self.sub.history.handled(self.sub.group, self.sub.member, delivery)
            delay = self.decide(delivery)
            if delay is None:
                settlement.acks.append(delivery)
                if self.inbox:
                    settlement.inbox.append(key)
                    if already is not None:
                        already.add(key)  # a second copy later in the batch is a duplicate too
            else:
                settlement.retries.append((delivery, delay))
        return settlement

    async def process(self, deliveries: Sequence[Delivery]) -> Settlement:
        """Handle and settle ``deliveries``, consulting the group's inbox first when ``inbox`` is on."""
        settlement = self.handle(deliveries, await self._already(deliveries, ()))
        if len(settlement):
            await self.sub.settle(settlement)
        return settlement

    async def _already(self, deliveries: Sequence[Delivery], written: Sequence[str]) -> set[str] | None:
        """The inbox's answer for ``deliveries``, plus ``written`` keys (a settle in flight stores them)."""
        if not self.inbox:
            return None
        keys = [dedupe_key(d) for d in deliveries]
        return await self.sub.seen(keys) | set(keys).intersection(written)

    async def step(self, timeout: float | None = None) -> Sequence[Delivery]:
        """Fetch one batch, handle it and settle it; return the batch."""
        batch = await self.fetch(timeout)
        if batch:
            await self.process(batch)
        return batch

    async def run_until(self, done: Callable[[], bool], timeout: float) -> bool:
        """Consume until ``done()`` holds or ``timeout`` seconds pass; return ``done()``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self.look_ahead:
            return await self._run_ahead(done, deadline)
        while not done():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            await self.step(min(self.fetch_timeout, remaining))
        return True

    async def _run_ahead(self, done: Callable[[], bool], deadline: float) -> bool:
        """Like the runtime with ``fetch_while_settling``: read batch N+1 while N settles, handle it after."""
        loop = asyncio.get_running_loop()
        ahead: tuple[Sequence[Delivery], set[str] | None] | None = None

        async def read(written: Sequence[str]) -> tuple[Sequence[Delivery], set[str] | None] | None:
            batch = await self.fetch(min(self.fetch_timeout, max(0.0, deadline - loop.time())))
            return (batch, await self._already(batch, written)) if batch else None

        while True:
            if ahead is None:
                if done() or loop.time() >= deadline:
                    return done()
                ahead = await read(())
                continue
            batch, already = ahead
            settlement = self.handle(batch, already)
            finishing = done() or loop.time() >= deadline  # then settle what is in hand and stop
            # As the runtime: never read past a settle that schedules retries (the schedule is not stored yet).
            reading = None if finishing or settlement.retries else asyncio.ensure_future(read(settlement.inbox))
            try:
                if len(settlement):
                    await self.sub.settle(settlement)
            except BaseException:
                if reading is not None:
                    await asyncio.gather(reading, return_exceptions=True)
                raise
            ahead = None if reading is None else await reading


async def run_all(consumers: Sequence[Consumer], done: Callable[[], bool], timeout: float) -> bool:
    """Run several consumers concurrently until ``done()`` holds or ``timeout`` passes."""
    await asyncio.gather(*(c.run_until(done, timeout) for c in consumers))
    return done()


async def wait_for(condition: Callable[[], bool], timeout: float, *, interval: float = 0.01) -> bool:
    """Wait until ``condition()`` holds or ``timeout`` seconds pass; return ``condition()``.

    For conditions no event signals (a child process's output, a clock): a
    bounded check-and-yield, never an unbounded sleep.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(interval)
    return True
