"""What a NATS subscription uses of its broker, as a protocol: the subscription never imports the broker.

:class:`~choreograph.brokers.nats.broker.NatsBroker` satisfies :class:`BrokerLink`
structurally and hands itself to each subscription it creates, so the imports
run one way: ``broker -> subscription -> link`` (a subscription needs the
broker's publishing path for outputs and inbox keys, which stays where it is
tuned, in :mod:`.publishing`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from nats.aio.client import Client
from nats.js.client import JetStreamContext

from choreograph.brokers.nats import naming as n
from choreograph.brokers.nats.config import NatsConfig
from choreograph.brokers.nats.keepalive import Keepalive
from choreograph.brokers.nats.publisher import Message
from choreograph.core.broker import ParkLedger, Record
from choreograph.core.storage_marker import StorageMarker


class BrokerLink(Protocol):
    """The broker side of a subscription: names, settings, the connection, the publishing path, lease renewal."""

    names: n.Names
    config: NatsConfig
    keepalive: Keepalive
    parked: ParkLedger
    """Records whose dead letter could not be stored, parked for a later delivery (see :mod:`.settling`)."""
    storage: StorageMarker
    """The deployment marker: StorageLost once the server lost its data (see :meth:`check_storage`)."""

    @property
    def connection(self) -> Client:
        """The NATS connection (the broker is connected before it creates a subscription)."""
        ...

    @property
    def jetstream(self) -> JetStreamContext:
        """The JetStream context."""
        ...

    async def publish_many(self, items: Sequence[tuple[str, Record]]) -> None:
        """Publish (topic, record) pairs in order."""
        ...

    async def store_inbox_keys(self, messages: Sequence[Message]) -> None:
        """Store inbox-bucket messages."""
        ...

    async def send_acked(self, messages: Sequence[Message], action: str, deadline: float | None = None) -> None:
        """Store ``messages`` in order, resending from the first unacknowledged one until the deadline."""
        ...

    async def check_storage(self, why: str = "periodic check") -> None:
        """Raise StorageLost if the server lost its data (the marker read after a reconnect, or when due)."""
        ...

    async def lost_storage(self, failure: Exception, why: str) -> bool:
        """After ``failure``: whether the server lost its data (then :attr:`storage` raises StorageLost)."""
        ...

    def forget(self, subscription: object) -> None:
        """Drop a closed subscription from the broker's set."""
        ...
