"""Section R of the conformance suite — replay — for backends that are a GroupAdmin.

R1-R2 reset a consumer group (:class:`~choreograph.core.group_admin.GroupAdmin`):
to each form of position on an idle group, then while a member holds a batch.
R3-R4 copy a range (:func:`~choreograph.runtime.replay.copy_range`) to another
topic and to another broker, and resume a copy that was interrupted. Every
scenario consumes what the group or the target got with a fresh history and
checks it with :func:`~choreograph.testing.checker.check_replay`: the range
complete, in per-key order, nothing from outside it. A backend that is no
GroupAdmin skips R1-R2; copies need only ``LogReader`` and ``PositionResolver``.

Without ``fenced_reset`` (Kafka: Apache Kafka refuses a reset while the group
has members; Tansu, the test server, keeps members that left on its books)
R2 closes the member before resetting and checks only what the group reads
next.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence

import pytest

from choreograph.core.broker import Broker, Delivery, LogReader, Position, Record, Settlement
from choreograph.core.errors import BrokerError, UnknownTopic
from choreograph.core.group_admin import GroupAdmin
from choreograph.testing.checker import check_replay
from choreograph.testing.consumer import Consumer, wait_for
from choreograph.testing.history import MESSAGE_ID_HEADER, Recorder
from choreograph.testing.scenario import ConformanceBase, scenario, weaker


def admin(broker: Broker) -> GroupAdmin:
    """The broker as a GroupAdmin, or skip the scenario."""
    if not isinstance(broker, GroupAdmin):
        pytest.skip(f"{type(broker).__name__} cannot reset consumer groups")
    return broker


def in_source_order(records: Sequence[Record], deliveries: Sequence[Delivery]) -> list[Record]:
    """``records`` ordered as the log holds them (partition, then offset), from a read of the log."""
    by_id = {r.headers[MESSAGE_ID_HEADER]: r for r in records}
    ordered = sorted(deliveries, key=lambda d: (d.partition, d.offset))
    return [by_id[d.headers[MESSAGE_ID_HEADER]] for d in ordered if d.headers.get(MESSAGE_ID_HEADER) in by_id]


class ReplayScenarios(ConformanceBase):
    """Scenarios R1-R4."""

    async def _read_back(self, broker: Broker, topic: str, group: str, replayed: Sequence[Record]) -> None:
        """Consume ``group`` on ``topic`` with a fresh history; assert it got exactly ``replayed`` in order."""
        rec = Recorder()
        wanted = {r.headers[MESSAGE_ID_HEADER] for r in replayed}
        consumer = Consumer(await rec.subscribe(broker, topic, group))
        try:
            await consumer.run_until(lambda: wanted <= rec.history.finished(group, topic), self.timeout)
            await consumer.step(0.1)  # anything from outside the range would show up now
        finally:
            await consumer.sub.close()
        check_replay(rec.history, group=group, topic=topic, replayed=replayed).assert_ok(
            self.forbid(ordered=True, exact=True)
        )

    async def _log(self, broker: Broker, topic: str) -> list[Delivery]:
        assert isinstance(broker, LogReader)
        return list(await broker.read(topic, Position.earliest(), limit=10_000))

    @scenario("R1", "Reset a group to earliest, latest, a time and offsets; it reads exactly from there")
    async def test_r01_reset_positions(self) -> None:
        topic, group = self.names("r1")
        async with self.broker() as broker:
            groups = admin(broker)
            first = self.records("first", 12, keys=["a", "b", "c"])
            await broker.publish(topic, first)
            mark = time.time() + 0.005
            await wait_for(lambda: time.time() > mark + 0.005, 1.0)
            second = self.records("second", 12, keys=["a", "b", "c"])
            await broker.publish(topic, second)
            log = await self._log(broker, topic)
            await self._read_back(broker, topic, group, in_source_order(first + second, log))

            moved = await groups.reset_group(topic, group, Position.at_time(mark))
            assert {d.partition for d in log} <= {r.partition for r in moved}
            positions = await groups.group_positions(topic, group)
            assert all(positions[r.partition] == r.after for r in moved), (positions, moved)
            await self._read_back(broker, topic, group, in_source_order(second, log))

            offsets: dict[int, list[Delivery]] = {}
            for delivery in log:
                offsets.setdefault(delivery.partition, []).append(delivery)
            chosen = {p: seen[len(seen) // 2].offset for p, seen in offsets.items()}
            after = [d for d in log if d.offset >= chosen[d.partition]]
            await groups.reset_group(topic, group, Position.at_offsets(chosen))
            positions = await groups.group_positions(topic, group)
            assert all(positions[p] == o for p, o in chosen.items()), (positions, chosen)
            await self._read_back(broker, topic, group, in_source_order(first + second, after))

            await groups.reset_group(topic, group, Position.latest())
            third = self.records("third", 6, keys=["a", "b", "c"])
            await broker.publish(topic, third)
            await self._read_back(broker, topic, group, in_source_order(third, await self._log(broker, topic)))

            once = await groups.reset_group(topic, group, Position.earliest())
            twice = await groups.reset_group(topic, group, Position.earliest())  # idempotent
            assert [(r.partition, r.after) for r in once] == [(r.partition, r.after) for r in twice]
            await self._read_back(
                broker, topic, group, in_source_order(first + second + third, await self._log(broker, topic))
            )

    @scenario(
        "R2",
        "Reset while a member holds a batch: its settle applies nothing; the group reads the new range",
        weaker("fenced_reset", "the member leaves before the reset; what the group reads next is checked"),
    )
    async def test_r02_reset_fences_running_member(self) -> None:
        topic, group = self.names("r2")
        async with self.broker() as broker:
            groups = admin(broker)
            records = self.records("r2", 12, keys=["a", "b", "c"])
            await broker.publish(topic, records)
            member = await broker.subscribe(topic, group)
            batch: Sequence[Delivery] = []
            deadline = time.monotonic() + self.timeout
            while not batch and time.monotonic() < deadline:
                batch = await member.fetch(50, 0.2)
            assert batch, "the member fetched nothing"
            if not self.capabilities.fenced_reset:
                await member.close()  # no fencing to check: the workers stop before a reset
                await groups.reset_group(topic, group, Position.earliest())
                await self._read_back(broker, topic, group, in_source_order(records, await self._log(broker, topic)))
                return
            await groups.reset_group(topic, group, Position.earliest())
            output_topic = f"{topic}.out"
            marker = Record(b"fenced-output", key="a", headers={MESSAGE_ID_HEADER: "fenced-output"})
            settlement = Settlement(acks=list(batch), outputs=[(output_topic, marker)], inbox=["fenced-inbox-key"])
            with pytest.raises(BrokerError):  # fenced: a settle of the old position applies nothing
                await member.settle(settlement)
            await member.close()
            probe = await broker.subscribe(topic, group)
            try:
                assert await probe.seen(["fenced-inbox-key"]) == set(), "the fenced settle's inbox key was stored"
            finally:
                await probe.close()
            await self._read_back(broker, topic, group, in_source_order(records, await self._log(broker, topic)))
            assert isinstance(broker, LogReader)
            try:
                outputs = await broker.read(output_topic, Position.earliest())
            except UnknownTopic:
                outputs = []
            assert not outputs, "the fenced settle's output was published"

    @scenario(
        "R3", "Copy a time range, filtered by key, to another topic and another broker: ids, order, dry-run count"
    )
    async def test_r03_copy_range(self) -> None:
        from choreograph.runtime.replay import CopyJob, FileCheckpoints, copy_range
        from choreograph.runtime.replay_range import Filter, plan, resolve

        topic, group = self.names("r3")
        async with self.broker() as broker, self.broker() as other:
            await broker.publish(topic, self.records("old", 10, keys=["a", "b", "c", "d"]))
            mark = time.time() + 0.005
            await wait_for(lambda: time.time() > mark + 0.005, 1.0)
            recent = self.records("new", 40, keys=["a", "b", "c", "d"])
            await broker.publish(topic, recent)
            accept = Filter(keys=frozenset({"a", "c"}))
            bounds = await resolve(broker, topic, Position.at_time(mark), None)
            await broker.publish(topic, self.records("late", 8, keys=["a", "c"]))  # after the range was resolved
            wanted = in_source_order([r for r in recent if r.key in ("a", "c")], await self._log(broker, topic))
            found = await plan(broker, topic, bounds, accept)
            assert found.total == len(wanted) == 20
            with tempfile.TemporaryDirectory() as directory:
                for target, target_topic in ((broker, f"{topic}.copy"), (other, f"{topic}.elsewhere")):
                    job = CopyJob(f"r3-{target_topic}", topic, target_topic, bounds, accept, batch=7)
                    report = await copy_range(
                        broker, target, job, total=found.total, checkpoints=FileCheckpoints(directory)
                    )
                    assert report.copied == found.total
                    await self._read_back(target, target_topic, group, wanted)

    @scenario("R4", "An interrupted copy resumes from its checkpoint: nothing lost, at most one batch twice")
    async def test_r04_copy_resumes(self) -> None:
        from choreograph.runtime.replay import CopyJob, checkpoints_for, copy_range
        from choreograph.runtime.replay_range import Filter, resolve

        topic, _ = self.names("r4")
        async with self.broker() as broker:
            records = self.records("r4", 30, keys=["a", "b", "c"])
            await broker.publish(topic, records)
            bounds = await resolve(broker, topic, Position.earliest(), None)
            with tempfile.TemporaryDirectory() as directory:
                checkpoints = checkpoints_for(broker, directory)
                job = CopyJob("r4-copy", topic, f"{topic}.copy", bounds, Filter(), fingerprint="r4", batch=4)

                class Interrupted(Exception):
                    pass

                def stop_after_two(done: int, total: int) -> None:
                    if done >= 8:
                        raise Interrupted

                with pytest.raises(Interrupted):
                    await copy_range(broker, broker, job, total=30, checkpoints=checkpoints, progress=stop_after_two)
                report = await copy_range(broker, broker, job, total=30, checkpoints=checkpoints)
                assert report.resumed
                assert await checkpoints.load("r4-copy") is None, "a finished copy leaves its checkpoint"
            copied = await self._log(broker, f"{topic}.copy")
            ids = [d.headers[MESSAGE_ID_HEADER] for d in copied]
            missing = {r.headers[MESSAGE_ID_HEADER] for r in records} - set(ids)
            assert not missing, f"the resumed copy lost {sorted(missing)} ({len(ids)} records copied)"
            assert len(ids) - len(set(ids)) <= job.batch
