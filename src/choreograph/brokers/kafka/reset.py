"""The Kafka broker's group reset (:class:`~choreograph.core.group_admin.GroupAdmin`).

Kafka's group coordinator owns committed offsets, and Apache Kafka accepts a
commit from outside the group (generation -1, as ``kafka-consumer-groups
--reset-offsets`` makes) only while the group has no members: a live member
would go on committing its own positions over the reset. The reset commits
every partition in one request and lets the coordinator decide. When it
refuses (unknown member, illegal generation, rebalance in progress), the reset
joins the group as a member itself and commits as one — only if the
coordinator's first assignment (within two session timeouts) hands it every
partition of the topic, that is when no other member is alive (Tansu, the test suite's server, keeps
members that left on its books, and only this path works there). Otherwise it
leaves and raises :class:`~choreograph.core.group_admin.GroupActive` —
nothing moved; stop the group's workers (or wait for their session to time
out) and reset again. The attempt makes the live members rebalance once:
what they had not committed is delivered again, as after any rebalance.

Then it commits the resolved offset of every partition and deletes the
group's retry state of the topic (``retry|<group>|<topic>|...`` rows of the
state topic), so nothing of the old position is retried; the inbox stays. A
resubmitted dead letter not handled yet is kept only if the new position is
at or before it in the log.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka import errors as kafka_errors
from aiokafka.structs import OffsetAndMetadata

from choreograph.core.broker import Position
from choreograph.core.group_admin import GroupActive, PartitionReset
from choreograph.core.names import check_group, check_topic

from .config import KafkaConfig
from .state import StateTable
from .translation import translated

_REFUSED = (
    kafka_errors.CommitFailedError,
    kafka_errors.IllegalGenerationError,
    kafka_errors.UnknownMemberIdError,
    kafka_errors.RebalanceInProgressError,
)
"""The coordinator's answers to an outside commit while the group has members."""


class GroupReset:
    """The ``GroupAdmin`` half of :class:`~choreograph.brokers.kafka.KafkaBroker`."""

    config: KafkaConfig

    def consumer_options(self) -> dict[str, Any]:
        raise NotImplementedError  # provided by KafkaBroker

    def check_open(self) -> None:
        raise NotImplementedError  # provided by KafkaBroker

    async def producer(self) -> Any:
        raise NotImplementedError  # provided by KafkaBroker

    async def state(self, *, fresh: bool = True) -> StateTable:
        raise NotImplementedError  # provided by KafkaBroker

    async def partitions(self, topic: str, *, create: bool = True) -> int:
        raise NotImplementedError  # provided by KafkaBroker

    async def resolve_position(self, topic: str, start: Position) -> dict[int, int]:
        raise NotImplementedError  # provided by KafkaBroker (log_admin)

    async def reset_group(self, topic: str, group: str, to: Position) -> list[PartitionReset]:
        """Commit ``to`` for ``group`` on every partition of ``topic``; refuse while the group has members."""
        check_topic(topic), check_group(group)
        self.check_open()
        count = await self.partitions(topic, create=False)
        before = await self.group_positions(topic, group)
        starts = await self.resolve_position(topic, to)
        tps = [TopicPartition(topic, p) for p in range(count)]
        offsets = {tp: OffsetAndMetadata(starts[tp.partition], "") for tp in tps}
        consumer = AIOKafkaConsumer(**self.consumer_options(), group_id=group)
        async with translated(f"reset group {group!r} on {topic!r}"):
            await consumer.start()
            try:
                consumer.assign(tps)
                await consumer.commit(offsets)
            except _REFUSED:
                await self._commit_as_member(topic, group, set(tps), offsets)
            finally:
                await consumer.stop()
            table = await self.state()
            prefix = f"retry|{group}|{topic}|"
            rows: list[tuple[str, bytes | None]] = [(key, None) for key in list(table.rows) if key.startswith(prefix)]
            if f"group|{topic}|{group}" not in table.rows:
                rows.append((f"group|{topic}|{group}", b"1"))
            await table.write(rows)
        return [PartitionReset(topic, group, p, before.get(p), starts[p]) for p in range(count)]

    async def _commit_as_member(
        self, topic: str, group: str, tps: set[TopicPartition], offsets: dict[TopicPartition, OffsetAndMetadata]
    ) -> None:
        """Join ``group``, and commit ``offsets`` as its member if it is handed every partition; else GroupActive."""
        config = self.config
        member = AIOKafkaConsumer(
            **self.consumer_options(),
            group_id=group,
            session_timeout_ms=int(config.session_timeout * 1000),
            heartbeat_interval_ms=int(config.heartbeat_interval * 1000),
        )
        member.subscribe([topic])
        await member.start()
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 2 * config.session_timeout
            while not member.assignment() and loop.time() < deadline:
                await member.getmany(timeout_ms=100, max_records=1)  # drives the join; what it reads is dropped
            if member.assignment() != tps:
                raise GroupActive(
                    f"group {group!r} has live members: Kafka resets a group only while it is empty; "
                    "stop its workers, then reset"
                )
            try:
                await member.commit(offsets)
            except _REFUSED as exc:
                raise GroupActive(f"group {group!r} rebalanced while being reset; stop its workers") from exc
        finally:
            await member.stop()

    async def group_positions(self, topic: str, group: str) -> dict[int, int]:
        """Return partition -> ``group``'s committed offset on ``topic`` (partitions without a commit left out)."""
        self.check_open()
        count = await self.partitions(topic, create=False)
        consumer = AIOKafkaConsumer(**self.consumer_options(), group_id=group)
        out: dict[int, int] = {}
        async with translated(f"read positions of {group!r}"):
            await consumer.start()
            try:
                for p in range(count):
                    committed = await consumer.committed(TopicPartition(topic, p))
                    if committed is not None:
                        out[p] = committed
            finally:
                await consumer.stop()
        return out
