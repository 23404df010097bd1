"""Section A of CONFORMANCE.md — transport — at the broker level; the harness is the consumer.

Scenarios A0-A8 (delivery, order, groups, start positions) are here; A9-A16
(closing, killed and stalled consumers, restarts, stops, health) are in
:mod:`choreograph.testing.transport_failure_scenarios`, which
:class:`TransportScenarios` inherits.
"""

from __future__ import annotations

import asyncio
import time

from choreograph.core import headers as h
from choreograph.core.broker import DeadLetterStore, Delivery, LagReporter, LogReader, Position, Record
from choreograph.core.clock import FakeClock
from choreograph.core.codec import decode, encode, from_binary, to_binary
from choreograph.core.envelope import Envelope
from choreograph.core.ids import new_id
from choreograph.testing.checker import check
from choreograph.testing.consumer import Consumer, run_all, wait_for
from choreograph.testing.faults import FailurePlan
from choreograph.testing.history import MESSAGE_ID_HEADER, Recorder, message_id
from choreograph.testing.scenario import scenario, weaker
from choreograph.testing.transport_failure_scenarios import TransportFailureScenarios


class TransportScenarios(TransportFailureScenarios):
    """Scenarios A0-A16 (A9-A16 inherited from :class:`TransportFailureScenarios`)."""

    @scenario("A0", "The backend declares the capabilities the suite was told, and implements them")
    async def test_a00_capabilities_declared(self) -> None:
        async with self.broker() as broker:
            assert broker.capabilities == self.capabilities, "suite and backend disagree on capabilities"
            if self.capabilities.lag:
                assert isinstance(broker, LagReporter)
            if self.capabilities.dead_letter_store:
                assert isinstance(broker, DeadLetterStore)
            if self.capabilities.replay:
                assert isinstance(broker, LogReader)

    @scenario("A1", "Round trip keeps payload, every envelope attribute and header, unicode included")
    async def test_a01_round_trip(self) -> None:
        topic, group = self.names("a1")
        envelope = Envelope(
            id=new_id(),
            source="conformance/sérvice-✓",
            type="conformance.round.trip",
            data={"text": "héllo wörld ✓ 你好 🎉", "n": 1, "nested": {"list": [1, 2.5, None, True]}},
            time="2024-01-02T03:04:05.123456Z",
            subject="sübject",
            dataschema="https://example.com/schemas/ü.json",
            correlationid=new_id(),
            causationid=new_id(),
            partitionkey="clé-ü",
            traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            tracestate="vendor=välue",
            schemaversion=3,
            extensions={"customext": "välue ✓"},
        )
        binary_headers, body = to_binary(envelope)
        sent = {
            "structured": Record(encode(envelope), key="clé-ü", headers={"x-ünicode": "välue ✓", "x-empty": ""}),
            "binary": Record(body, key="clé-ü", headers=binary_headers),
            "raw": Record(bytes(range(256)), key=None),
            "empty": Record(b"", key="k"),
        }
        records = [
            Record(r.value, key=r.key, headers={**r.headers, MESSAGE_ID_HEADER: name}) for name, r in sent.items()
        ]
        rec = Recorder()
        async with self.broker() as broker:
            before = time.time()
            await rec.publish(broker, topic, records)
            after = time.time()
            consumer = Consumer(await rec.subscribe(broker, topic, group))
            deliveries: dict[str, Delivery] = {}
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.timeout
            while len(deliveries) < len(sent) and loop.time() < deadline:
                batch = await consumer.fetch()
                deliveries.update((message_id(d.headers, d.value), d) for d in batch)
                await consumer.process(batch)
            await consumer.sub.close()
        assert set(deliveries) == set(sent), f"delivered {sorted(deliveries)}, published {sorted(sent)}"
        for name, record in sent.items():
            d = deliveries[name]
            assert d.topic == topic
            assert d.value == record.value, f"{name}: bytes changed"
            assert d.key == record.key, f"{name}: key changed"
            for header, value in record.headers.items():
                assert d.headers.get(header) == value, f"{name}: header {header!r} changed"
            assert d.attempt == 1
            assert d.first_failure is None
            assert before - 1.0 <= d.timestamp <= after + 1.0, f"{name}: timestamp {d.timestamp} is not publish time"
        assert decode(deliveries["structured"].value) == envelope
        assert from_binary(deliveries["binary"].headers, deliveries["binary"].value) == envelope
        assert deliveries["binary"].headers[h.CONTENT_TYPE_HEADER] == h.CONTENT_TYPE_JSON
        check(rec.history, group=group, topic=topic).assert_ok(self.forbid(exact=True))

    @scenario("A2", "Many publishers and subscribers at once (thousands of messages): all received")
    async def test_a02_many_publishers_and_subscribers(self) -> None:
        topic, group = self.names("a2")
        publishers, per_publisher, chunk = 8, 250, 25
        rec = Recorder()
        async with self.broker() as broker:

            async def publish(p: int) -> None:
                records = self.records(f"p{p}", per_publisher, keys=[f"p{p}-k{j}" for j in range(5)])
                for i in range(0, per_publisher, chunk):
                    await rec.publish(broker, topic, records[i : i + chunk])

            consumers = [Consumer(await rec.subscribe(broker, topic, group)) for _ in range(4)]
            total = publishers * per_publisher
            await asyncio.gather(
                *(publish(p) for p in range(publishers)),
                run_all(consumers, lambda: len(rec.history.finished(group, topic)) >= total, self.timeout),
            )
            for c in consumers:
                await c.sub.close()
        check(rec.history, group=group, topic=topic).assert_ok(self.forbid(ordered=True))

    @scenario("A3", "Many topics in parallel: no cross-talk")
    async def test_a03_many_topics(self) -> None:
        pairs = [self.names(f"a3-{i}") for i in range(12)]
        rec = Recorder()
        async with self.broker() as broker:

            async def one(topic: str, group: str) -> None:
                consumer = Consumer(await rec.subscribe(broker, topic, group))
                for i in range(0, 40, 10):
                    await rec.publish(broker, topic, self.records(topic, 40, keys=["a", "b", None])[i : i + 10])
                await consumer.run_until(lambda: len(rec.history.finished(group, topic)) >= 40, self.timeout)
                await consumer.sub.close()

            await asyncio.gather(*(one(topic, group) for topic, group in pairs))
        for topic, group in pairs:
            check(rec.history, group=group, topic=topic).assert_ok(self.forbid(ordered=True, exact=True))

    @scenario("A4", "Nack then redelivery; repeated nacks from several consumers, then success: nothing lost")
    async def test_a04_nack_redelivery(self) -> None:
        topic, group = self.names("a4")
        records = self.records("m", 60)
        failing = frozenset(message_id(r.headers, r.value) for r in records[::3])
        plan = FailurePlan(attempts=frozenset({1, 2}), messages=failing)
        rec = Recorder()
        async with self.broker() as broker:
            await rec.publish(broker, topic, records)
            consumers = [Consumer(await rec.subscribe(broker, topic, group), decide=plan.decide) for _ in range(3)]
            await run_all(consumers, lambda: len(rec.history.finished(group, topic)) >= 60, self.timeout)
            for c in consumers:
                await c.sub.close()
        check(rec.history, group=group, topic=topic).assert_ok(self.forbid())
        for mid in failing:
            attempts = [e.attempt for e in rec.history.of("deliver", group=group) if e.message == mid]
            assert attempts[:3] == [1, 2, 3], f"{mid}: attempts {attempts}, expected 1, 2, 3"

    @scenario(
        "A5",
        "Per-key order under one consumer and across a rebalance (consumer joins/leaves)",
        weaker("per_key_order", "nothing lost; order not asserted"),
    )
    async def test_a05_per_key_order_across_rebalance(self) -> None:
        topic, group = self.names("a5")
        records = self.records("m", 400, keys=[f"k{i}" for i in range(8)])
        rec = Recorder()
        async with self.broker() as broker:
            await rec.publish(broker, topic, records[:200])
            a = Consumer(await rec.subscribe(broker, topic, group), batch=20)
            for _ in range(3):
                await a.step()
            b = Consumer(await rec.subscribe(broker, topic, group), batch=20)
            await rec.publish(broker, topic, records[200:300])
            for _ in range(3):
                await a.step()
                await b.step()
            held = await a.fetch()  # a leaves holding an unsettled batch
            if held:
                a.handle(held[: len(held) // 2])
            await a.sub.close()
            c = Consumer(await rec.subscribe(broker, topic, group), batch=20)
            await rec.publish(broker, topic, records[300:])
            await run_all([b, c], lambda: len(rec.history.finished(group, topic)) >= 400, self.timeout)
            await b.sub.close()
            await c.sub.close()
        check(rec.history, group=group, topic=topic).assert_ok(self.forbid(ordered=True))

    @scenario("A6", "Consumer groups: every group gets everything; within a group each message goes to one member")
    async def test_a06_consumer_groups(self) -> None:
        topic, g1 = self.names("a6")
        g2 = g1 + "-other"
        rec = Recorder()
        async with self.broker() as broker:
            members = [Consumer(await rec.subscribe(broker, topic, g1)) for _ in range(3)]
            members.append(Consumer(await rec.subscribe(broker, topic, g2)))
            for i in range(0, 300, 50):
                await rec.publish(broker, topic, self.records("m", 300, keys=[f"k{j}" for j in range(30)])[i : i + 50])

            def done() -> bool:
                return all(len(rec.history.finished(g, topic)) >= 300 for g in (g1, g2))

            await run_all(members, done, self.timeout)
            for m in members:
                await m.sub.close()
        for g in (g1, g2):
            check(rec.history, group=g, topic=topic).assert_ok(self.forbid(ordered=True, exact=True))

    @scenario(
        "A7",
        "A new group starts at earliest, latest, or a timestamp; replay from an offset",
        weaker("replay", "earliest and latest only; time and offset starts not asserted"),
    )
    async def test_a07_start_positions(self) -> None:
        topic, group = self.names("a7")
        clock = FakeClock() if self.accepts_clock else None
        rec = Recorder()
        async with self.broker(clock) as broker:
            first = await rec.publish(broker, topic, self.records("first", 10, keys=["a", "b", None]))
            if clock is not None:
                clock.advance(10.0)
                mark = clock.now()
            else:
                mark = time.time() + 0.005
                await wait_for(lambda: time.time() > mark + 0.005, 1.0)
            second = await rec.publish(broker, topic, self.records("second", 10, keys=["a", "b", None]))
            starts = {"earliest": Position.earliest(), "latest": Position.latest()}
            if self.capabilities.replay:
                starts["time"] = Position.at_time(mark)
            consumers = {
                name: Consumer(await rec.subscribe(broker, topic, f"{group}-{name}", start=start))
                for name, start in starts.items()
            }
            third = await rec.publish(broker, topic, self.records("third", 10, keys=["a", "b", None]))
            expect = {"earliest": first + second + third, "latest": third, "time": second + third}
            await self._drain_expected(consumers, topic, group, expect)
            if self.capabilities.replay:
                offsets: dict[int, list[tuple[int, str]]] = {}
                for e in rec.history.of("deliver", group=f"{group}-earliest"):
                    assert e.partition is not None
                    assert e.offset is not None
                    offsets.setdefault(e.partition, []).append((e.offset, e.message))
                chosen = {p: sorted(seen)[len(seen) // 2][0] for p, seen in offsets.items()}
                expect["offsets"] = [m for p, seen in offsets.items() for o, m in seen if o >= chosen[p]]
                start = Position.at_offsets(chosen)
                replay = {"offsets": Consumer(await rec.subscribe(broker, topic, f"{group}-offsets", start=start))}
                await self._drain_expected(replay, topic, group, expect)
        for name, expected in expect.items():
            check(rec.history, group=f"{group}-{name}", topic=topic, expect=expected).assert_ok(self.forbid(exact=True))

    async def _drain_expected(
        self, consumers: dict[str, Consumer], topic: str, group: str, expect: dict[str, list[str]]
    ) -> None:
        history = next(iter(consumers.values())).sub.history

        async def drain(name: str, consumer: Consumer) -> None:
            wanted = set(expect[name])
            await consumer.run_until(lambda: wanted <= history.finished(f"{group}-{name}", topic), self.timeout)
            await consumer.step(0.05)  # anything a wrong start position would add shows up now
            await consumer.sub.close()

        await asyncio.gather(*(drain(name, c) for name, c in consumers.items()))

    @scenario("A8", "Subscribers opening and closing mid-stream: nothing lost")
    async def test_a08_members_come_and_go(self) -> None:
        topic, group = self.names("a8")
        records = self.records("m", 600, keys=[f"k{i}" for i in range(10)])
        rec = Recorder()
        async with self.broker() as broker:
            members: list[Consumer] = []
            for round_ in range(12):
                await rec.publish(broker, topic, records[round_ * 50 : (round_ + 1) * 50])
                members.append(Consumer(await rec.subscribe(broker, topic, group), batch=15))
                for m in members:
                    await m.step(0.01)
                if round_ % 2 and len(members) > 1:
                    leaving = members.pop(0)
                    held = await leaving.fetch(0.01)  # leaves with an unsettled batch
                    leaving.handle(held[: len(held) // 2])
                    await leaving.sub.close()
                if round_ % 3 == 2 and len(members) > 1:
                    await members.pop(0).sub.close()
            last = Consumer(await rec.subscribe(broker, topic, group))
            await run_all([*members, last], lambda: len(rec.history.finished(group, topic)) >= 600, self.timeout)
            for m in [*members, last]:
                await m.sub.close()
        check(rec.history, group=group, topic=topic).assert_ok(self.forbid(ordered=True))
