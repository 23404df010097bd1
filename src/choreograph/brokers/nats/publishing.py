"""The NATS broker's publishing: records, resubmits and inbox keys, pipelined or in batches, resent until stored.

A mixin of :class:`~choreograph.brokers.nats.NatsBroker`, kept apart so the
broker module stays readable. The wire work is :class:`.publisher.BatchPublisher`'s;
this half picks partitions, stamps ``Nats-Msg-Id`` headers and retries.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.client import JetStreamContext

from choreograph.brokers.nats import naming as n
from choreograph.brokers.nats.config import NatsConfig
from choreograph.brokers.nats.publisher import FAST_LIMIT, BatchPublisher, Message
from choreograph.brokers.nats.translation import STORAGE_LIMITS, translate
from choreograph.core.broker import Record
from choreograph.core.errors import BrokerClosed, BrokerUnavailable
from choreograph.core.names import check_topic
from choreograph.core.partitioning import RoundRobin
from choreograph.core.redaction import redact_url
from choreograph.core.storage_marker import StorageMarker

_RETRY_DELAY: Final = 0.2
Send = Callable[[Sequence[Message], float], Awaitable[tuple[int, BaseException | None]]]
"""A batch send: (messages, timeout) -> (index of the first not stored, the failure or None)."""


class Publishing:
    """The publishing half of :class:`NatsBroker`."""

    config: NatsConfig
    names: n.Names
    _nc: Client | None
    _round_robin: RoundRobin
    _batched: dict[str, bool]
    _publisher: BatchPublisher | None
    _inbox_batches: tuple[Send, int] | None
    storage: StorageMarker

    async def _ready(self) -> JetStreamContext:
        raise NotImplementedError  # provided by NatsBroker

    async def check_storage(self, why: str = "periodic check") -> None:
        raise NotImplementedError  # provided by NatsBroker

    async def _topic(self, topic: str, *, create: bool = True) -> int:
        raise NotImplementedError  # provided by NatsBroker

    async def publish(self, topic: str, records: Sequence[Record]) -> None:
        """Append ``records`` to ``topic``; stored (per the stream's replicas) when it returns.

        Safe to call concurrently. Records are pipelined; a failed one is sent
        again with the same ``Nats-Msg-Id`` (with everything after it) until
        ``publish_timeout``, so retries never duplicate. Same-key order holds
        unless a retry happens inside the call. Fails (BrokerUnavailable,
        naming the servers) within ``publish_timeout`` of the call, and at
        once while the client knows it is disconnected.
        """
        check_topic(topic)
        if records:
            await self.publish_many([(topic, record) for record in records])

    async def publish_many(self, items: Sequence[tuple[str, Record]]) -> None:
        """Publish (topic, record) pairs in order; see :meth:`publish`."""
        await self._ready()
        await self.check_storage()  # after a reconnect, or once per interval: the marker; StorageLost once lost
        deadline = asyncio.get_running_loop().time() + self.config.publish_timeout
        call = uuid.uuid4().hex
        prepared: dict[str, list[Message]] = {}  # per topic, in order
        subjects: dict[str, list[str]] = {}  # per topic, per partition
        for index, (topic, record) in enumerate(items):
            partition_subjects = subjects.get(topic)
            if partition_subjects is None:
                count = await self._topic(topic)
                partition_subjects = subjects[topic] = [self.names.partition_subject(topic, p) for p in range(count)]
            partition = self._round_robin.partition(topic, record.key, len(partition_subjects))
            headers = n.to_wire(record.headers, record.key)
            headers[n.MSG_ID_HEADER] = n.message_id(record.value, f"{call}.{index}")
            prepared.setdefault(topic, []).append((partition_subjects[partition], bytes(record.value), headers))
        assert self._publisher is not None
        fast = self._publisher.publish_fast
        sends = [
            self._in_batches(messages, "publish", fast, FAST_LIMIT, deadline)
            if self._batched.get(topic)
            else self.send_acked(messages, "publish", deadline)
            for topic, messages in prepared.items()
        ]
        await (sends[0] if len(sends) == 1 else asyncio.gather(*sends))

    async def store_inbox_keys(self, messages: Sequence[Message]) -> None:
        """Store inbox-bucket messages: in batches (one or a few answers each) where the bucket allows them.

        Storing a key twice is harmless, so a batch that fails simply goes again one by one.
        """
        action = "settle (writing inbox keys)"
        deadline = asyncio.get_running_loop().time() + self.config.publish_timeout
        if self._inbox_batches is not None:
            await self._in_batches(messages, action, *self._inbox_batches, deadline)
        else:
            await self.send_acked(messages, action, deadline)

    async def _in_batches(
        self, messages: Sequence[Message], action: str, send_batch: Send, limit: int, deadline: float
    ) -> None:
        """Store ``messages`` in order, ``limit`` at a time through ``send_batch`` (one answer per batch).

        A batch that does not end cleanly goes again message by message
        (:meth:`send_acked`): what it did store is dropped by ``Nats-Msg-Id``
        (records) or overwritten with itself (inbox keys). All within one
        ``deadline`` (loop time): a batch given up leaves its fallback only
        what is left of it.
        """
        loop = asyncio.get_running_loop()
        for start in range(0, len(messages), limit):
            chunk = messages[start : start + limit]
            self._check_connected(action)
            try:
                _, failure = await send_batch(chunk, max(0.05, deadline - loop.time()))
            except Exception as exc:
                failure = exc
            if failure is not None:
                await self.send_acked(chunk, action, deadline)

    async def send_acked(self, messages: Sequence[Message], action: str, deadline: float | None = None) -> None:
        """Store ``messages`` in order, resending from the first unacknowledged one until the deadline.

        The deadline is loop time, ``publish_timeout`` from now if not given.
        Resends keep their ``Nats-Msg-Id`` headers, so a message stored but not
        acknowledged in time is dropped by the stream as a duplicate. Raises
        BrokerError naming ``action`` and the servers when time runs out or a
        failure is final, and BrokerUnavailable at once while the client is
        disconnected (it knows nothing sent now can be answered in time).
        """
        await self._ready()
        assert self._publisher is not None
        loop = asyncio.get_running_loop()
        if deadline is None:
            deadline = loop.time() + self.config.publish_timeout
        pending = messages
        while True:
            self._check_connected(action)
            remaining = max(0.05, deadline - loop.time())
            try:
                first, failure = await self._publisher.publish(pending, remaining)
            except Exception as exc:
                first, failure = 0, exc
            if failure is None:
                return
            if isinstance(failure, nats.errors.NoRespondersError | nats.js.errors.NoStreamResponseError):
                # no stream takes the subject: deleted, or the server's store was wiped (then: StorageLost)
                await self.storage.verify(f"a {action} no stream answered")
            self._check_connected(action)
            if not _retryable(failure) or loop.time() + _RETRY_DELAY >= deadline:
                raise translate(failure, f"{action} on {self._servers}") from failure
            pending = pending[first:]  # resend in order; already stored ones are dropped by their message id
            await asyncio.sleep(_RETRY_DELAY)

    @property
    def _servers(self) -> str:
        """The servers, credentials redacted, for error messages."""
        return ", ".join(redact_url(server) for server in self.config.servers)

    def _check_connected(self, action: str) -> None:
        """Raise BrokerUnavailable if the client knows it is disconnected (reconnecting, or closed)."""
        nc = self._nc
        if nc is None or nc.is_connected:
            return
        if nc.is_closed:
            raise BrokerClosed(f"NATS {action} failed: the connection to {self._servers} is closed")
        raise BrokerUnavailable(f"NATS {action} failed: not connected to {self._servers} (reconnecting)")


def _retryable(exc: BaseException) -> bool:
    if isinstance(
        exc, nats.errors.ConnectionClosedError | nats.errors.ConnectionDrainingError | nats.errors.MaxPayloadError
    ):
        return False
    if isinstance(exc, nats.js.errors.APIError):
        if exc.err_code in STORAGE_LIMITS:
            return False  # refused by the stream's limits, sent as a 503: sending again cannot help
        return exc.code == 503 or isinstance(exc, nats.js.errors.ServiceUnavailableError)
    return isinstance(exc, nats.errors.Error | TimeoutError | OSError)
