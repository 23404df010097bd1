"""Section A of CONFORMANCE.md, scenarios A9-A16: closing, killed and stalled consumers, restarts, stops, health.

Part of :class:`~choreograph.testing.transport_scenarios.TransportScenarios`;
the harness is the consumer.
"""

from __future__ import annotations

import asyncio

import pytest

from choreograph.core.broker import Broker, Delivery
from choreograph.core.errors import BrokerError
from choreograph.testing.checker import DELIVERED_AFTER_ACK, LOST, check
from choreograph.testing.consumer import Consumer, run_all
from choreograph.testing.faults import (
    AFTER_DELIVERIES,
    KILL_POINTS,
    MID_BATCH,
    ChildBroker,
    ChildProcess,
    FailurePlan,
)
from choreograph.testing.history import History, Recorder, message_id
from choreograph.testing.scenario import ConformanceBase, not_applicable, scenario, weaker


class TransportFailureScenarios(ConformanceBase):
    """Scenarios A9-A16: the transport when members, publishers or the broker stop, stall or die."""

    @scenario(
        "A9",
        "Closing a publisher flushes what it buffered",
        weaker(
            "persistent",
            "a publish that returned is fetchable at once (nothing hidden in a buffer); publishes racing "
            "close() finish or raise BrokerError",
        ),
    )
    async def test_a09_close_flushes(self) -> None:
        topic, group = self.names("a9")
        rec = Recorder()
        broker = await self.make_broker()
        try:
            probe = Consumer(await rec.subscribe(broker, topic + ".probe", group))
            await rec.publish(broker, topic + ".probe", self.records("probe", 1))
            assert await probe.step(self.timeout), "a publish that returned is not fetchable"
            await probe.sub.close()
            racing = [asyncio.ensure_future(rec.publish(broker, topic, self.records(f"r{i}", 10))) for i in range(20)]
            await asyncio.sleep(0)
            if self.capabilities.persistent:
                broker = await self.reopen_broker(broker)
            else:
                await broker.close()
            results = await asyncio.wait_for(asyncio.gather(*racing, return_exceptions=True), self.timeout)
            for result in results:
                assert not isinstance(result, BaseException) or isinstance(result, BrokerError), (
                    f"a publish racing close() failed with {result!r}, not BrokerError"
                )
            if self.capabilities.persistent:
                acked = {e.message for e in rec.history.of("publish", topic=topic)}
                consumer = Consumer(await rec.subscribe(broker, topic, group))
                await consumer.run_until(lambda: acked <= rec.history.finished(group, topic), self.timeout)
                await consumer.sub.close()
                check(rec.history, group=group, topic=topic, expect=acked).assert_ok({LOST, DELIVERED_AFTER_ACK})
        finally:
            await broker.close()
            await broker.close()  # idempotent

    @scenario(
        "A10",
        "Kill -9 a consumer process mid-batch: its partitions move, nothing lost, duplicates bounded",
        weaker("cross_process", "the member stops dead in-process and is closed instead of kill -9"),
    )
    async def test_a10_consumer_killed_mid_batch(self) -> None:
        for point in KILL_POINTS:
            await self._kill_consumer_at(point)

    async def _kill_consumer_at(self, point: str) -> None:
        topic, group = self.names(f"a10-{point}")
        history = History()
        rec = Recorder(history)
        batch = 10
        async with self.broker() as broker:
            await rec.publish(broker, topic, self.records(point, 60, keys=[f"k{i}" for i in range(6)]))
            if self.capabilities.cross_process:
                child = await ChildProcess.consumer(
                    self._child(broker), history, topic=topic, group=group, after=25, point=point, batch=batch
                )
                try:
                    await child.wait_ready(self.timeout)
                finally:
                    status = await child.kill()
                assert status == -9, f"child exited with {status}, not by SIGKILL"
            else:
                victim = Consumer(await rec.subscribe(broker, topic, group), batch=batch)
                await self._stop_dead(victim, after=25, point=point)
                await victim.sub.close()
            survivor = Consumer(await rec.subscribe(broker, topic, group))
            wait = self.timeout + (self.lease_timeout or 0.0)
            await survivor.run_until(lambda: len(history.finished(group, topic)) >= 60, wait)
            await survivor.sub.close()
        check(history, group=group, topic=topic).assert_ok(self.forbid(ordered=True), max_duplicates=batch)

    def _child(self, broker: Broker) -> ChildBroker:
        spec = self.child_broker(broker)
        if spec is None:
            raise NotImplementedError(
                f"{type(self).__name__} declares cross_process=True, so it must define "
                "`child_broker(self, broker)` returning ChildBroker(opener='pkg.mod:open', url=...)"
            )
        return spec

    @staticmethod
    async def _stop_dead(consumer: Consumer, *, after: int, point: str) -> None:
        """Consume normally until ``after`` deliveries, then stop at ``point`` without settling."""
        received = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10.0
        while True:
            assert loop.time() < deadline, f"only {received} deliveries arrived, expected {after}"
            batch = await consumer.fetch(1.0)
            if received + len(batch) >= after:
                cut = {AFTER_DELIVERIES: after - received, MID_BATCH: max(1, len(batch) // 2)}.get(point, len(batch))
                consumer.handle(batch[:cut])
                return
            received += len(batch)
            await consumer.process(batch)

    @scenario(
        "A10b",
        "A consumer stalled past its lease: its deliveries go to another member; nothing lost",
        weaker("cross_process", "no leases: a stalled member keeps its deliveries until it closes"),
    )
    async def test_a10b_stalled_consumer(self) -> None:
        topic, group = self.names("a10b")
        history = History()
        rec = Recorder(history)
        async with self.broker() as broker:
            await rec.publish(broker, topic, self.records("m", 40, keys=[f"k{i}" for i in range(4)]))
            if self.capabilities.cross_process:
                if self.lease_timeout is None:
                    raise NotImplementedError(f"{type(self).__name__} must set lease_timeout (cross_process=True)")
                child = await ChildProcess.consumer(
                    self._child(broker), history, topic=topic, group=group, after=5, point=MID_BATCH, batch=10
                )
                try:
                    await child.wait_ready(self.timeout)
                    child.stall()
                    survivor = Consumer(await rec.subscribe(broker, topic, group))
                    wait = self.timeout + self.lease_timeout
                    await survivor.run_until(lambda: len(history.finished(group, topic)) >= 40, wait)
                    child.resume()
                finally:
                    await child.kill()
            else:
                stalled = Consumer(await rec.subscribe(broker, topic, group), batch=10)
                await self._stop_dead(stalled, after=5, point=MID_BATCH)
                survivor = Consumer(await rec.subscribe(broker, topic, group))
                await survivor.run_until(lambda: False, 0.1)  # the survivor works while the other stalls
                await stalled.sub.close()
                await survivor.run_until(lambda: len(history.finished(group, topic)) >= 40, self.timeout)
            await survivor.sub.close()
        check(history, group=group, topic=topic).assert_ok(self.forbid(ordered=True), max_duplicates=10)

    @scenario(
        "A11",
        "Broker restart (twice, mid-stream) for persistent backends: nothing acked is lost after reconnect",
        not_applicable("persistent", "asserts only that nothing is lost without a restart"),
    )
    async def test_a11_broker_restart(self) -> None:
        topic, group = self.names("a11")
        records = self.records("m", 150, keys=[f"k{i}" for i in range(5)])
        rec = Recorder()
        broker = await self.make_broker()
        try:
            for part in range(3):
                await rec.publish(broker, topic, records[part * 50 : (part + 1) * 50])
                consumer = Consumer(await rec.subscribe(broker, topic, group), batch=20)
                for _ in range(2):
                    await consumer.step()
                if part < 2 and self.capabilities.persistent:
                    broker = await self.reopen_broker(broker)
                else:
                    await consumer.sub.close()
            consumer = Consumer(await rec.subscribe(broker, topic, group))
            await consumer.run_until(lambda: len(rec.history.finished(group, topic)) >= 150, self.timeout)
            await consumer.sub.close()
        finally:
            await broker.close()
        check(rec.history, group=group, topic=topic).assert_ok(self.forbid(ordered=True))

    @scenario("A12", "A failure inside a batch nacks only the failing messages")
    async def test_a12_failure_inside_batch(self) -> None:
        topic, group = self.names("a12")
        rec = Recorder()
        async with self.broker() as broker:
            await rec.publish(broker, topic, self.records("m", 20))
            consumer = Consumer(await rec.subscribe(broker, topic, group), batch=20)
            batch = await consumer.fetch(self.timeout)
            assert batch, "nothing delivered"
            failed = {message_id(d.headers, d.value) for d in batch[::2]}
            plan = FailurePlan(messages=frozenset(failed))
            consumer.decide = plan.decide
            await consumer.process(batch)
            consumer.decide = FailurePlan(attempts=frozenset()).decide
            await consumer.run_until(lambda: len(rec.history.finished(group, topic)) >= 20, self.timeout)
            await consumer.sub.close()
        again = {e.message for e in rec.history.of("deliver", group=group) if e.attempt and e.attempt > 1}
        assert again == failed, f"redelivered {sorted(again)}, but only {sorted(failed)} failed"
        check(rec.history, group=group, topic=topic).assert_ok(self.forbid(exact=True))

    @scenario("A13", "Graceful stop with in-flight handlers: cancelled work comes back, and is not a failure")
    async def test_a13_graceful_stop(self) -> None:
        topic, group = self.names("a13")
        rec = Recorder()
        async with self.broker() as broker:
            first = Consumer(await rec.subscribe(broker, topic, group), batch=5)
            waiting = asyncio.ensure_future(first.fetch(self.timeout))  # a stop cancels a pending fetch
            await asyncio.sleep(0)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            await rec.publish(broker, topic, self.records("m", 10))
            held = await first.fetch(self.timeout)
            assert held, "a subscription must keep working after a cancelled fetch"
            first.handle(held)  # handlers ran, then the stop cancelled them before the ack
            await first.sub.close()
            second = Consumer(await rec.subscribe(broker, topic, group))
            second_batches: list[Delivery] = []
            while len(rec.history.finished(group, topic)) < 10:
                batch = await second.fetch(self.timeout)
                assert batch, "records were not delivered again"
                second_batches += batch
                await second.process(batch)
            await second.sub.close()
        cancelled = {message_id(d.headers, d.value) for d in held}
        redelivered = [d for d in second_batches if message_id(d.headers, d.value) in cancelled]
        assert redelivered, "the cancelled deliveries did not come back"
        for d in redelivered:
            assert d.first_failure is None, f"{d.offset}: a cancelled handler was counted as a failure"
            # the contract counts deliveries (2); a backend counting failed attempts says 1
            assert d.attempt in (1, 2), f"{d.offset}: redelivered as attempt {d.attempt}"
        check(rec.history, group=group, topic=topic).assert_ok(self.forbid(), max_duplicates=len(held))

    @scenario(
        "A16",
        "Reading the next batch while the last one settles, across a rebalance: nothing lost, per-key order",
        weaker("fetch_while_settling", "the same workload, each batch settled before the next is fetched"),
    )
    async def test_a16_fetch_while_settling(self) -> None:
        ahead = self.capabilities.fetch_while_settling
        topic, group = self.names("a16")
        records = self.records("m", 300, keys=[f"k{i}" for i in range(8)])
        rec = Recorder()
        async with self.broker() as broker:
            await rec.publish(broker, topic, records[:150])
            a = Consumer(await rec.subscribe(broker, topic, group), batch=10, inbox=True, look_ahead=ahead)
            await a.run_until(lambda: len(rec.history.finished(group, topic)) >= 50, self.timeout)
            b = Consumer(await rec.subscribe(broker, topic, group), batch=10, inbox=True, look_ahead=ahead)
            await rec.publish(broker, topic, records[150:])
            await run_all([a, b], lambda: len(rec.history.finished(group, topic)) >= 300, self.timeout)
            await a.sub.close()
            await b.sub.close()
        check(rec.history, group=group, topic=topic).assert_ok(self.forbid(ordered=True, exact=True))

    @scenario("A14", "Health check reports a broker that is down")
    async def test_a14_health_check(self) -> None:
        broker = await self.make_broker()
        await broker.ping()
        await broker.close()
        with pytest.raises(BrokerError):
            await broker.ping()
        with pytest.raises(BrokerError):
            await broker.publish("conformance.a14", self.records("m", 1))
        await broker.close()

    @scenario(
        "A15",
        "Durability: an acknowledged publish survives kill -9 of the publishing process",
        not_applicable("persistent", "asserts only that acknowledged publishes are delivered, without a kill"),
        not_applicable("cross_process", "the publisher cannot live in another process"),
    )
    async def test_a15_publish_survives_kill(self) -> None:
        topic, group = self.names("a15")
        history = History()
        rec = Recorder(history)
        broker = await self.make_broker()
        try:
            if self.capabilities.persistent and self.capabilities.cross_process:
                child = await ChildProcess.publisher(self._child(broker), history, topic=topic, after=30, prefix="p")
                try:
                    await child.wait_ready(self.timeout)
                finally:
                    await child.kill()
                broker = await self.reopen_broker(broker)
            else:
                await rec.publish(broker, topic, self.records("p", 30))
            acked = {e.message for e in history.of("publish", topic=topic)}
            consumer = Consumer(await rec.subscribe(broker, topic, group))
            await consumer.run_until(lambda: acked <= history.finished(group, topic), self.timeout)
            await consumer.sub.close()
        finally:
            await broker.close()
        # a record whose ack the kill cut off may be delivered too: only loss is an anomaly here
        check(history, group=group, topic=topic, expect=acked).assert_ok({LOST, DELIVERED_AFTER_ACK})
