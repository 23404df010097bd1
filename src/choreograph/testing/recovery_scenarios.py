"""Section B of CONFORMANCE.md — recoverability and dead letters — where the broker alone decides.

Scenarios that need the runtime (retry policy, non-retryable errors, Reject,
sequenced parking, circuit breaker) belong in a runtime section added beside
this one.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from choreograph.core.broker import (
    Broker,
    DeadLetter,
    DeadLetterStore,
    Delivery,
    LagReporter,
    LogReader,
    Settlement,
    TopicAdmin,
)
from choreograph.core.clock import FakeClock
from choreograph.core.enums import DeadLetterReason, DeadLetterStatus
from choreograph.core.errors import BrokerError, NotFound, UnknownTopic
from choreograph.core.ids import new_id
from choreograph.testing.checker import check
from choreograph.testing.consumer import Consumer, dedupe_key
from choreograph.testing.faults import ChildProcess, failing_settle
from choreograph.testing.history import MESSAGE_ID_HEADER, History, Recorder, message_id
from choreograph.testing.scenario import ConformanceBase, not_applicable, scenario, weaker


def dead_letter_for(delivery: Delivery, group: str, **changes: object) -> DeadLetter:
    """Return a dead letter for ``delivery`` with every field filled in, unicode included."""
    fields: dict[str, object] = {
        "id": new_id(),
        "topic": delivery.topic,
        "group": group,
        "handler": "conformance.handlers:on_thing ✓",
        "partition": delivery.partition,
        "offset": delivery.offset,
        "key": delivery.key,
        "value": delivery.value,
        "headers": dict(delivery.headers),
        "event_id": new_id(),
        "event_type": "conformance.thing.happened",
        "reason": DeadLetterReason.ERROR,
        "error_type": "ValueError",
        "error_message": "bäd thing ✗\nsecond line",
        "stack": 'Traceback (most recent call last):\n  File "hándler.py", line 1, in on_thing\nValueError: bäd',
        "attempts": 3,
        "first_failure": 1_700_000_000.123456,
        "last_failure": 1_700_000_005.5,
    }
    fields.update(changes)
    return DeadLetter(**fields)  # type: ignore[arg-type]


def _store(broker: Broker) -> DeadLetterStore:
    assert isinstance(broker, DeadLetterStore), "dead_letter_store=True but the broker is no DeadLetterStore"
    return broker


class RecoveryScenarios(ConformanceBase):
    """Scenarios B16, B18-B21, B24, B25."""

    @scenario(
        "B16",
        "Delayed retries: attempt count and delays as requested (fake clock)",
        weaker("native_delay", "attempt counting only; the delay is the consumer's business"),
    )
    async def test_b16_retry_attempts_and_delays(self) -> None:
        topic, group = self.names("b16")
        native = self.capabilities.native_delay
        clock = FakeClock() if self.accepts_clock and native else None
        rec = Recorder()
        async with self.broker(clock) as broker:
            await rec.publish(broker, topic, self.records("m", 1))
            consumer = Consumer(await rec.subscribe(broker, topic, group), batch=1)
            (first,) = await consumer.fetch(self.timeout)
            assert (first.attempt, first.first_failure) == (1, None)
            if clock is not None:
                failed_at = clock.now()
                await consumer.sub.settle(Settlement(retries=[(first, 1.0)]))
                assert not await consumer.fetch(0.05), "a retry came back before its delay"
                clock.advance(0.5)
                assert not await consumer.fetch(0.05), "a retry came back before its delay"
                clock.advance(0.6)
                (second,) = await consumer.fetch(self.timeout)
                assert second.attempt == 2
                assert second.first_failure == pytest.approx(failed_at, abs=1e-3)
                await consumer.sub.settle(Settlement(retries=[(second, 5.0)]))
                clock.advance(4.0)
                assert not await consumer.fetch(0.05), "a retry came back before its delay"
                clock.advance(1.5)
            else:
                delay = 0.3 if native else 0.0
                failed_at = time.time()
                await consumer.sub.settle(Settlement(retries=[(first, delay)]))
                (second,) = await consumer.fetch(self.timeout)
                assert time.time() - failed_at >= delay - 0.01, "a retry came back before its delay"
                assert second.attempt == 2
                assert second.first_failure == pytest.approx(failed_at, abs=1.0)
                await consumer.sub.settle(Settlement(retries=[(second, 0.0)]))
            (third,) = await consumer.fetch(self.timeout)
            assert third.attempt == 3
            assert third.first_failure == second.first_failure, "first_failure must not move"
            await consumer.sub.settle(Settlement(acks=[third]))
            await consumer.sub.close()
        check(rec.history, group=group, topic=topic).assert_ok(self.forbid(exact=True))

    @scenario(
        "B18",
        "A dead-letter record round-trips every field: envelope bytes, topic, group, handler, error, attempts, times",
        weaker("dead_letter_store", "the settlement is accepted and the record is not delivered again"),
    )
    async def test_b18_dead_letter_round_trip(self) -> None:
        topic, group = self.names("b18")
        rec = Recorder()
        async with self.broker() as broker:
            await rec.publish(broker, topic, self.records("m", 1, keys=["clé"]))
            consumer = Consumer(await rec.subscribe(broker, topic, group))
            (delivery,) = await consumer.fetch(self.timeout)
            letter = dead_letter_for(delivery, group)
            await consumer.sub.settle(Settlement(dead_letters=[(delivery, letter)]))
            assert not await consumer.fetch(0.1), "a dead-lettered record was delivered again"
            await consumer.sub.close()
            if self.capabilities.dead_letter_store:
                store = _store(broker)
                assert await store.dead_letter(letter.id) == letter
                assert [d.id for d in await store.dead_letters(group=group)] == [letter.id]
                assert await store.dead_letters(group=group, status=DeadLetterStatus.RESUBMITTED) == []
                assert await store.dead_letters(group=group + "-other") == []
                with pytest.raises(NotFound):
                    await store.dead_letter(new_id())
        check(rec.history, group=group, topic=topic).assert_ok(self.forbid(exact=True))

    @scenario("B19", "A settle that fails leaves its deliveries unsettled: they come back")
    async def test_b19_failed_settle_redelivers(self) -> None:
        topic, group = self.names("b19")
        rec = Recorder()
        async with self.broker() as broker:
            await rec.publish(broker, topic, self.records("m", 6))
            broken = Consumer(failing_settle(await rec.subscribe(broker, topic, group), calls={1}), batch=6)
            batch = await broken.fetch(self.timeout)
            assert batch
            with pytest.raises(BrokerError):
                await broken.process(batch)
            await broken.sub.close()
            healthy = Consumer(await rec.subscribe(broker, topic, group))
            await healthy.run_until(lambda: len(rec.history.finished(group, topic)) >= 6, self.timeout)
            await healthy.sub.close()
        lost_batch = {message_id(d.headers, d.value) for d in batch}
        again = {e.message for e in rec.history.of("deliver", group=group) if e.member == healthy.sub.member}
        assert lost_batch <= again, "deliveries of a failed settle did not come back"
        check(rec.history, group=group, topic=topic).assert_ok(self.forbid(), max_duplicates=len(batch))

    @scenario(
        "B20",
        "Resubmitting a dead letter keeps its id and bytes, for its group only; edit-and-resubmit replaces the bytes",
        not_applicable("dead_letter_store", "resubmission is the runtime's dead-letter store's job"),
    )
    async def test_b20_resubmit(self) -> None:
        if not self.capabilities.dead_letter_store:
            return
        topic, group = self.names("b20")
        other = group + "-other"
        rec = Recorder()
        async with self.broker() as broker:
            store = _store(broker)
            await rec.publish(broker, topic, self.records("m", 2, keys=["k1", "k2"]))
            bystander = Consumer(await rec.subscribe(broker, topic, other))
            await bystander.run_until(lambda: len(rec.history.finished(other, topic)) >= 2, self.timeout)
            consumer = Consumer(await rec.subscribe(broker, topic, group))
            letters: dict[str, tuple[Delivery, DeadLetter]] = {}
            while len(letters) < 2:
                batch = await consumer.fetch(self.timeout)
                assert batch, "records were not delivered"
                settlement = Settlement(dead_letters=[(d, dead_letter_for(d, group)) for d in batch])
                await consumer.sub.settle(settlement)
                letters.update({message_id(d.headers, d.value): (d, dl) for d, dl in settlement.dead_letters})
            (original, first), (edited_from, second) = letters["m-0"], letters["m-1"]

            assert await store.resubmit(first.id) is True
            rec.history.resubmitted(group, topic, "m-0")
            (again,) = await consumer.fetch(self.timeout)
            assert (again.topic, again.partition, again.offset) == (original.topic, original.partition, original.offset)
            assert (again.value, again.key) == (original.value, original.key)
            assert again.headers[MESSAGE_ID_HEADER] == "m-0"
            assert (again.attempt, again.first_failure) == (1, None), "a resubmitted record starts at attempt 1"
            await consumer.process([again])
            assert (await store.dead_letter(first.id)).status == DeadLetterStatus.RESUBMITTED
            assert await store.resubmit(first.id) is False, "a second resubmit must do nothing"

            assert await store.resubmit(second.id, value=b"edited \xe2\x9c\x93") is True
            rec.history.resubmitted(group, topic, "m-1")
            (edited,) = await consumer.fetch(self.timeout)
            assert edited.value == b"edited \xe2\x9c\x93"
            assert (edited.partition, edited.offset) == (edited_from.partition, edited_from.offset)
            await consumer.process([edited])
            assert not await consumer.fetch(0.05), "resubmitted once, delivered twice"
            assert not await bystander.step(0.05), "a resubmit reached another group"
            with pytest.raises(NotFound):
                await store.resubmit(new_id())
            await consumer.sub.close()
            await bystander.sub.close()
        for g in (group, other):
            check(rec.history, group=g, topic=topic).assert_ok(self.forbid(exact=True))

    @scenario(
        "B21",
        "Submitting the same dead letter twice does not process it twice (inbox dedupes the processed one)",
        not_applicable("dead_letter_store", "resubmission is the runtime's dead-letter store's job"),
    )
    async def test_b21_resubmit_twice_processed_once(self) -> None:
        if not self.capabilities.dead_letter_store:
            return
        topic, group = self.names("b21")
        rec = Recorder()
        async with self.broker() as broker:
            store = _store(broker)
            await rec.publish(broker, topic, self.records("m", 3))
            consumer = Consumer(await rec.subscribe(broker, topic, group), inbox=True, batch=3)
            letters: dict[str, DeadLetter] = {}
            while len(letters) < 3:
                batch = await consumer.fetch(self.timeout)
                assert batch, "records were not delivered"
                settlement = Settlement()
                for d in batch:
                    mid = message_id(d.headers, d.value)
                    letters[mid] = dead_letter_for(d, group)
                    settlement.dead_letters.append((d, letters[mid]))
                    if mid == "m-1":  # processed, then dead-lettered (say its output failed later)
                        rec.history.handled(group, consumer.sub.member, d)
                        settlement.inbox.append(dedupe_key(d))
                await consumer.sub.settle(settlement)

            results = await asyncio.gather(store.resubmit(letters["m-0"].id), store.resubmit(letters["m-0"].id))
            assert sorted(results) == [False, True], f"two resubmits returned {results}"
            assert await store.resubmit(letters["m-1"].id) is True
            assert await store.purge([letters["m-2"].id]) == 1
            assert await store.resubmit(letters["m-2"].id) is False, "a purged dead letter was resubmitted"
            assert (await store.dead_letter(letters["m-2"].id)).status == DeadLetterStatus.PURGED
            for mid in ("m-0", "m-1"):
                rec.history.resubmitted(group, topic, mid)
            done = {"m-0", "m-1"}
            await consumer.run_until(lambda: done <= rec.history.finished(group, topic), self.timeout)
            assert not await consumer.step(0.05)
            await consumer.sub.close()
        handled = [e.message for e in rec.history.of("handle", group=group)]
        assert sorted(handled) == ["m-0", "m-1"], f"handler runs: {handled}"
        check(rec.history, group=group, topic=topic, dedupe=True).assert_ok(self.forbid(exact=True))

    @scenario("B24", "A record on a topic no group reads is kept for a group created later at earliest")
    async def test_b24_no_subscriber_is_not_dropped(self) -> None:
        topic, group = self.names("b24")
        rec = Recorder()
        async with self.broker() as broker:
            await rec.publish(broker, topic, self.records("m", 5, keys=["a", None]))
            if self.capabilities.replay:
                assert isinstance(broker, LogReader)
                read = await broker.read(topic)
                assert sorted(message_id(d.headers, d.value) for d in read) == [f"m-{i}" for i in range(5)]
            if isinstance(broker, TopicAdmin):
                info = {t.name: t for t in await broker.topics()}
                assert info[topic].records == 5
            consumer = Consumer(await rec.subscribe(broker, topic, group))
            if self.capabilities.lag:
                assert isinstance(broker, LagReporter)
                assert sum(p.lag for p in await broker.lag(group)) == 5
            await consumer.run_until(lambda: len(rec.history.finished(group, topic)) >= 5, self.timeout)
            if self.capabilities.lag:
                assert isinstance(broker, LagReporter)
                assert sum(p.lag for p in await broker.lag(group)) == 0
            await consumer.sub.close()
        check(rec.history, group=group, topic=topic).assert_ok(self.forbid(exact=True))

    @scenario(
        "B25",
        "A settle from a member that lost its partitions (stalled past its lease) is refused: nothing of it applies",
        not_applicable("cross_process", "no leases: one process's members cannot lose a partition to another"),
    )
    async def test_b25_settle_after_losing_the_lease_is_refused(self) -> None:
        if not self.capabilities.cross_process:
            return
        if self.lease_timeout is None:
            raise NotImplementedError(f"{type(self).__name__} must set lease_timeout (cross_process=True)")
        topic, group = self.names("b25")
        outputs = f"{topic}-out"
        history = History()
        rec = Recorder(history)
        async with self.broker() as broker:
            spec = self.child_broker(broker)
            if spec is None:
                raise NotImplementedError(f"{type(self).__name__} declares cross_process=True: define child_broker")
            await rec.publish(broker, topic, self.records("m", 20, keys=[f"k{i}" for i in range(4)]))
            # Given a member in another process holding a batch, frozen past its lease while another takes over
            child = await ChildProcess.holder(spec, history, topic=topic, group=group, outputs=outputs, batch=10)
            try:
                await child.wait_ready(self.timeout)
                child.stall()
                survivor = Consumer(await rec.subscribe(broker, topic, group))
                wait = self.timeout + self.lease_timeout
                await survivor.run_until(lambda: len(history.finished(group, topic)) >= 20, wait)
                # When it wakes up and settles its batch (acks, and one output each)
                child.resume()
                outcome = await child.settle_held(self.timeout)
            finally:
                await child.kill()
            await survivor.sub.close()
            # Then the settle was refused, and none of its outputs exists
            assert outcome["settled"] == "refused", f"a member that lost its lease settled: {outcome}"
            if self.capabilities.replay:
                assert isinstance(broker, LogReader)
                try:
                    written = await broker.read(outputs)
                except UnknownTopic:
                    written = []
                assert written == [], f"{len(written)} output(s) of the refused settle were written"
        check(history, group=group, topic=topic).assert_ok(self.forbid(ordered=True), max_duplicates=10)
