"""Section F of CONFORMANCE.md — faults: an operator's bad day, tried on every backend where it applies.

F1 a member whose close fails; F2 per-key order across kill -9 of a busy
worker; F3 per-key order across a broker restart under busy workers; F4 a
record near the largest size the backend accepts, dead-lettered; F5 a dead
letter the backend cannot store, parked; F6 a deleted store.

Some faults need the backend's help to inject, through hooks of its
conformance subclass: :meth:`FaultScenarios.failing_writes` (F1),
``can_restart_server`` and :meth:`FaultScenarios.restart_server` (F3),
:meth:`FaultScenarios.refusing_dead_letters` (F5), ``can_lose_store`` and
:meth:`FaultScenarios.lose_store` (F6). A backend without the hook skips the
scenario, saying why.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import ClassVar

import pytest

from choreograph.core.broker import (
    Broker,
    DeadLetterStore,
    Delivery,
    LagReporter,
    ParkReporter,
    Record,
    Settlement,
)
from choreograph.core.clock import FakeClock
from choreograph.core.errors import BrokerError, StorageLost
from choreograph.testing.checker import DELIVERED_AFTER_ACK, check
from choreograph.testing.child import open_broker
from choreograph.testing.consumer import Consumer
from choreograph.testing.faults import MID_BATCH, ChildBroker, ChildProcess
from choreograph.testing.history import MESSAGE_ID_HEADER, History, Recorder, message_id
from choreograph.testing.recovery_scenarios import dead_letter_for
from choreograph.testing.scenario import ConformanceBase, not_applicable, scenario, weaker

_KEYS = [f"k{i}" for i in range(12)]


class FaultScenarios(ConformanceBase):
    """Scenarios F1-F6, and the hooks a backend gives to inject their faults."""

    max_record_bytes: ClassVar[int] = 1_000_000
    """The size of F4's record: close to the largest value the backend (its test server) accepts."""
    can_restart_server: ClassVar[bool] = False
    """True if :meth:`restart_server` restarts the broker's server in place (F3)."""
    can_lose_store: ClassVar[bool] = False
    """True if :meth:`lose_store` deletes the broker's storage under it (F6)."""
    cannot_lose_store: ClassVar[str] = "the broker's storage cannot be deleted under it"
    """Why F6 is skipped when ``can_lose_store`` is False (shown in the skip)."""
    close_raises: ClassVar[bool] = True
    """False if a close whose leave fails logs it and returns (F1 then cannot see the failure raised)."""

    def failing_writes(self, broker: Broker) -> AbstractAsyncContextManager[None] | None:
        """Return a context inside which the backend refuses ``broker``'s writes (a full disk, a lock); or None."""
        return None

    async def restart_server(self) -> None:
        """Restart the broker's server on the same address and data; open brokers reconnect by themselves."""
        raise NotImplementedError(f"{type(self).__name__} sets can_restart_server: define restart_server")

    def refusing_dead_letters(self, broker: Broker) -> AbstractAsyncContextManager[None] | None:
        """Return a context inside which the backend cannot store dead letters, but takes other writes; or None."""
        return None

    async def lose_store(self, broker: Broker) -> None:
        """Delete ``broker``'s storage under it (the database file and its companions)."""
        raise NotImplementedError(f"{type(self).__name__} sets can_lose_store: define lose_store")

    def _spec(self, broker: Broker) -> ChildBroker:
        spec = self.child_broker(broker)
        if spec is None:
            raise NotImplementedError(f"{type(self).__name__} declares cross_process=True: define child_broker")
        return spec

    # -- F1 -----------------------------------------------------------------------

    @scenario(
        "F1",
        "A member whose close fails is forgotten: it renews nothing, another member takes its partitions, "
        "every event is handled",
        not_applicable("cross_process", "no leases: a member of one process cannot outlive its close"),
    )
    async def test_f01_failing_close(self) -> None:
        if not self.capabilities.cross_process:
            return
        topic, group = self.names("f1")
        history = History()
        rec = Recorder(history)
        async with self.broker() as broker:
            failing = self.failing_writes(broker)
            if failing is None:
                pytest.skip(f"{type(self).__name__} gives no failing_writes hook: a close here cannot be made to fail")
            other = await open_broker(self._spec(broker).opener, self._spec(broker).url)
            try:
                await rec.publish(broker, topic, self.records("m", 40, keys=_KEYS))
                # Given a member holding a batch it has not settled
                doomed = Consumer(await rec.subscribe(broker, topic, group), batch=10)
                held = await doomed.fetch(self.timeout)
                assert held, "nothing delivered"
                # When its close fails (the backend refuses its writes meanwhile)
                async with failing:
                    if self.close_raises:
                        with pytest.raises(BrokerError):  # else the hook injected nothing
                            await doomed.sub.close()
                    else:
                        await doomed.sub.close()
                # Then it is forgotten here: it hands out nothing more
                with pytest.raises(BrokerError):
                    await doomed.sub.fetch(10, 0.05)
                # And a member of another process takes its partitions, once its leases lapse: every event handled
                survivor = Consumer(await rec.subscribe(other, topic, group))
                wait = self.timeout + 2 * (self.lease_timeout or 0.0)
                await survivor.run_until(lambda: len(history.finished(group, topic)) >= 40, wait)
                await survivor.sub.close()
            finally:
                await other.close()
        check(history, group=group, topic=topic).assert_ok(self.forbid(ordered=True), max_duplicates=len(held))

    # -- F2 -----------------------------------------------------------------------

    @scenario(
        "F2",
        "Per-key order across kill -9 of a busy worker, with publishes going on: nothing lost, order kept",
        not_applicable("cross_process", "no worker process to kill: A10's in-process stop covers it"),
    )
    async def test_f02_per_key_order_across_a_busy_worker_kill(self) -> None:
        if not self.capabilities.cross_process:
            return
        topic, group = self.names("f2")
        history = History()
        rec = Recorder(history)
        batch = 10
        async with self.broker() as broker:
            feeding = _Feeder(rec, broker, topic)
            await feeding.publish(60)
            # Given a busy worker in another process and one here, both reading while publishes go on
            child = await ChildProcess.consumer(
                self._spec(broker), history, topic=topic, group=group, after=40, point=MID_BATCH, batch=batch
            )
            feeder = asyncio.ensure_future(feeding.run())
            survivor = Consumer(await rec.subscribe(broker, topic, group), batch=batch)
            try:
                working = asyncio.ensure_future(survivor.run_until(lambda: child.ready, self.timeout * 2))
                try:
                    await child.wait_ready(self.timeout * 2)
                finally:
                    await working
                # When it is killed in the middle of a batch
            finally:
                status = await child.kill()
            assert status == -9, f"child exited with {status}, not by SIGKILL"
            # Then the survivor takes its partitions and handles everything, publishes after the kill too
            after_kill = feeding.published + 60
            try:
                await _until(lambda: feeding.published >= after_kill, self.timeout, "publishes after the kill")
            finally:
                feeding.stop()
                await feeder
            wait = self.timeout * 2 + 2 * (self.lease_timeout or 0.0)
            published = feeding.published
            await survivor.run_until(lambda: len(history.finished(group, topic)) >= published, wait)
            await survivor.sub.close()
        check(history, group=group, topic=topic).assert_ok(self.forbid(ordered=True), max_duplicates=3 * batch)

    # -- F3 -----------------------------------------------------------------------

    @scenario(
        "F3",
        "Per-key order across a broker restart under two busy workers: nothing lost, order kept",
        not_applicable("persistent", "nothing survives a restart to be ordered"),
        weaker(
            "atomic_settle",
            "acks are not confirmed by the server: one sent just before the restart may be lost with it, and its "
            "record comes back once more (a duplicate, never a loss nor out of order)",
        ),
    )
    async def test_f03_per_key_order_across_a_broker_restart(self) -> None:
        if not self.capabilities.persistent:
            return
        if not self.can_restart_server:
            pytest.skip(f"{type(self).__name__} cannot restart its broker's server in place (can_restart_server)")
        topic, group = self.names("f3")
        history = History()
        rec = Recorder(history)
        async with self.broker() as broker:
            feeding = _Feeder(rec, broker, topic)
            await feeding.publish(300)
            workers = [_Worker(rec, broker, topic, group, pace=0.05) for _ in range(2)]
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 6 * self.timeout + 4 * (self.lease_timeout or 0.0)
            done: list[bool] = []
            running = [asyncio.ensure_future(w.run(lambda: bool(done), deadline)) for w in workers]
            try:
                # Given two workers busy with a backlog (each batch takes them 50 ms)
                await _until(lambda: len(history.finished(group, topic)) >= 60, self.timeout, "a first share handled")
                # When the server restarts under them, in the middle of it
                assert len(history.finished(group, topic)) < feeding.published, "the backlog was gone before"
                await self.restart_server()
                await _until_up(broker, self.timeout * 2)
                await feeding.publish(100)
                # Then they carry on: everything handled
                await _until(
                    lambda: (
                        len(history.finished(group, topic) | _unsure(workers, history, group, topic))
                        >= feeding.published
                    ),
                    deadline - loop.time(),
                    "every event handled after the restart",
                )
            finally:
                done.append(True)
                await asyncio.gather(*running, return_exceptions=True)
            for worker in workers:
                worker.settle_unsure(history)
            if self.capabilities.lag:
                assert isinstance(broker, LagReporter)
                behind = sum(p.lag for p in await broker.lag(group) if p.topic == topic)
                assert behind == 0, f"{behind} record(s) not committed after the restart"
        forbidden = self.forbid(ordered=True)
        if not self.capabilities.atomic_settle:
            forbidden.discard(DELIVERED_AFTER_ACK)
        check(history, group=group, topic=topic).assert_ok(forbidden, max_duplicates=60)

    # -- F4 -----------------------------------------------------------------------

    @scenario(
        "F4",
        "A record near the largest size the backend accepts fails its handler: it is dead-lettered whole (or "
        "parked and reported), and the rest of its partition is handled meanwhile",
    )
    async def test_f04_oversized_dead_letter(self) -> None:
        topic, group = self.names("f4")
        rec = Recorder()
        big = Record(os.urandom(self.max_record_bytes), key="k", headers={MESSAGE_ID_HEADER: "big"})
        async with self.broker() as broker:
            await rec.publish(broker, topic, [big])
            await rec.publish(broker, topic, self.records("m", 5, keys=["k"]))
            consumer = Consumer(await rec.subscribe(broker, topic, group), batch=10)
            # a long error, as a real stack would be: the dead letter is bigger than the record
            stack = "Traceback (most recent call last):\n" + '  File "handler.py", line 1\n' * 2000
            await _dead_letter_big(consumer, stack, lambda: len(rec.history.finished(group, topic)) >= 6, self.timeout)
            await consumer.sub.close()
            parked = broker.parked_counts().get((topic, group), 0) if isinstance(broker, ParkReporter) else 0
            if self.capabilities.dead_letter_store and not parked:
                assert isinstance(broker, DeadLetterStore)
                (letter,) = await broker.dead_letters(group=group)
                assert letter.value == big.value, "the dead letter does not hold the record's bytes"
                # a backend may keep only the stack's end (the innermost frames) beside a value in chunks
                assert letter.stack, "the dead letter lost the stack"
                assert stack.endswith(letter.stack), "the dead letter's stack is not the handler's"
        check(rec.history, group=group, topic=topic).assert_ok(self.forbid(ordered=True, exact=True))

    # -- F5 -----------------------------------------------------------------------

    @scenario(
        "F5",
        "A dead letter the backend cannot store: the record is parked (kept, counted, delivered again later), "
        "the rest of the settlement applies and its partition moves on",
        not_applicable("dead_letter_store", "the runtime's own dead-letter store decides"),
    )
    async def test_f05_dead_letter_that_cannot_be_stored_is_parked(self) -> None:
        if not self.capabilities.dead_letter_store:
            return
        topic, group = self.names("f5")
        clock = FakeClock() if self.accepts_clock and self.capabilities.native_delay else None
        rec = Recorder()
        async with self.broker(clock) as broker:
            refusing = self.refusing_dead_letters(broker)
            if refusing is None:
                pytest.skip(f"{type(self).__name__} gives no refusing_dead_letters hook")
            assert isinstance(broker, ParkReporter), "a backend that parks reports it (core.broker.ParkReporter)"
            assert isinstance(broker, DeadLetterStore)
            await rec.publish(broker, topic, self.records("m", 6, keys=["k", "j"]))
            consumer = Consumer(await rec.subscribe(broker, topic, group), batch=10)
            # Given a batch whose first record of key k must be dead-lettered
            batch: list[Delivery] = []
            while len(batch) < 6:
                got = await consumer.fetch(self.timeout)
                assert got, "records were not delivered"
                batch += got
            poison = min((d for d in batch if d.key == "k"), key=lambda d: d.offset)
            rest = [d for d in batch if d is not poison]
            for d in batch:
                rec.history.handled(group, consumer.sub.member, d)
            # When the backend cannot store dead letters as the batch settles
            async with refusing:
                await consumer.sub.settle(
                    Settlement(acks=rest, dead_letters=[(poison, dead_letter_for(poison, group))])
                )
            # Then the settle went through, the record is parked (counted, not stored, not delivered now)
            parked = broker.parked_counts().get((topic, group))
            assert parked == 1, f"{parked} record(s) parked, not 1"
            stored = await broker.dead_letters(group=group)
            assert stored == [], f"{len(stored)} dead letter(s) stored although the backend refused them"
            assert not await consumer.fetch(0.2), "a parked record was delivered again at once"
            if clock is not None:
                # And it is kept: delivered again once its park delay passed
                clock.advance(400.0)
                (again,) = await consumer.fetch(self.timeout)
                assert message_id(again.headers, again.value) == message_id(poison.headers, poison.value), (
                    "another record came back than the parked one"
                )
                await consumer.process([again])
            await consumer.sub.close()
        check(rec.history, group=group, topic=topic).assert_ok(self.forbid())

    # -- F6 -----------------------------------------------------------------------

    @scenario(
        "F6",
        "A deleted store: publishes fail with StorageLost, a worker on it exits non-zero, nothing is "
        "acknowledged into nothing",
        not_applicable("cross_process", "an in-process store cannot be deleted under the broker"),
    )
    async def test_f06_deleted_store(self) -> None:
        if not self.capabilities.cross_process:
            return
        if not self.can_lose_store:
            pytest.skip(f"{type(self).__name__}: {self.cannot_lose_store} (can_lose_store)")
        topic, group = self.names("f6")
        history = History()
        rec = Recorder(history)
        async with self.broker() as broker:
            await rec.publish(broker, topic, self.records("m", 20, keys=_KEYS))
            # Given a worker in another process that handled everything and waits for more
            child = await ChildProcess.consumer(
                self._spec(broker), history, topic=topic, group=group, after=10**9, batch=5
            )
            try:
                await child.follow(lambda: len(history.finished(group, topic)) >= 20, self.timeout)
                # When the store is deleted under both
                await self.lose_store(broker)
                # Then a publish fails, naming the loss, and so does the next
                for _ in range(2):
                    with pytest.raises(StorageLost):
                        await rec.publish(broker, topic, self.records("late", 1))
                # And the worker exits non-zero, rather than working on
                status = await child.exited(self.timeout + 2 * (self.lease_timeout or 0.0))
            finally:
                await child.kill()
            assert status not in (0, -9), f"the worker on a deleted store exited with {status}"
            stderr = await child._stderr()
            assert "StorageLost" in stderr, f"the worker stopped, but not on StorageLost:\n{stderr[-2000:]}"
        published = {e.message for e in history.of("publish", topic=topic)}
        assert not any(m.startswith("late") for m in published), "a publish was acknowledged into a deleted store"


class _Feeder:
    """Publishes records of the scenario's keys in order, a few at a time; counts what was acknowledged."""

    def __init__(self, rec: Recorder, broker: Broker, topic: str) -> None:
        self._rec = rec
        self._broker = broker
        self._topic = topic
        self._stopping = False
        self.published = 0

    async def publish(self, count: int) -> None:
        """Publish ``count`` records in order (each acknowledged before the next batch goes)."""
        for _ in range(0, count, 5):
            first = self.published
            records = [
                Record(f"p-{i}".encode(), key=_KEYS[i % len(_KEYS)], headers={MESSAGE_ID_HEADER: f"p-{i}"})
                for i in range(first, first + 5)
            ]
            await self._rec.publish(self._broker, self._topic, records)
            self.published += len(records)

    async def run(self) -> None:
        """Publish five records at a time until :meth:`stop`, letting the consumers run in between."""
        while not self._stopping:
            await self.publish(5)
            await asyncio.sleep(0.02)  # a steady trickle, not a flood: pacing, not synchronization

    def stop(self) -> None:
        """Let :meth:`run` return after the publish in hand (never cut one off: it might land unrecorded)."""
        self._stopping = True


class _Worker:
    """A harness consumer that survives broker errors by resubscribing, as the runtime does.

    A settle that failed may still have been applied (the reply was lost to a
    restart); its acks are kept as *unsure*, and counted as settled at the end
    only if the record never came back (:meth:`settle_unsure`): the group's
    lag then tells whether the broker committed it.
    """

    def __init__(self, rec: Recorder, broker: Broker, topic: str, group: str, *, pace: float = 0.0) -> None:
        self._rec = rec
        self._broker = broker
        self.topic = topic
        self.group = group
        self._pace = pace
        self.unsure: list[tuple[str, Settlement]] = []

    async def run(self, stop: Callable[[], bool], deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while not stop() and loop.time() < deadline:
            try:
                sub = await self._rec.subscribe(self._broker, self.topic, self.group)
            except BrokerError:
                await asyncio.sleep(0.1)  # the broker is down: try again shortly
                continue
            consumer = Consumer(sub, batch=10)
            try:
                while not stop() and loop.time() < deadline:
                    batch = await consumer.fetch(0.1)
                    if not batch:
                        continue
                    settlement = consumer.handle(batch)
                    await asyncio.sleep(self._pace)  # the handlers' work: keeps the backlog in hand
                    try:
                        await sub.settle(settlement)
                    except BrokerError:
                        self.unsure.append((sub.member, settlement))
                        raise
            except BrokerError:
                await asyncio.sleep(0.1)
            finally:
                with contextlib.suppress(BrokerError):
                    await sub.close()

    def unsure_messages(self, history: History) -> set[str]:
        finished = history.finished(self.group, self.topic)
        return {message_id(d.headers, d.value) for _, s in self.unsure for d in s.acks} - finished

    def settle_unsure(self, history: History) -> None:
        """Record the acks of failed settles whose records never came back as settled."""
        finished = history.finished(self.group, self.topic)
        for member, settlement in self.unsure:
            acks = [d for d in settlement.acks if message_id(d.headers, d.value) not in finished]
            if acks:
                history.settled(self.group, member, Settlement(acks=acks))


def _unsure(workers: list[_Worker], history: History, group: str, topic: str) -> set[str]:
    return set().union(*(w.unsure_messages(history) for w in workers))


async def _until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.02)  # the workers run in other tasks (or processes): look again shortly


async def _until_up(broker: Broker, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            await broker.ping()
            return
        except BrokerError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.1)


async def _dead_letter_big(consumer: Consumer, stack: str, done: Callable[[], bool], timeout: float) -> None:
    """Consume, dead-lettering the record ``big`` (with ``stack``) and acking the rest, until ``done()``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    sub = consumer.sub
    while not done():
        assert loop.time() < deadline, "records were not all settled in time"
        batch = await consumer.fetch(0.5)
        settlement = Settlement()
        for d in batch:
            sub.history.handled(sub.group, sub.member, d)
            if message_id(d.headers, d.value) == "big":
                letter = dead_letter_for(d, sub.group, stack=stack, error_message="too big to handle")
                settlement.dead_letters.append((d, letter))
            else:
                settlement.acks.append(d)
        if len(settlement):
            await sub.settle(settlement)
