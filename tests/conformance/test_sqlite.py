"""The embedded SQLite backend proves itself against the conformance suite."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from choreograph.brokers.sqlite import SqliteBroker
from choreograph.core.broker import Broker
from choreograph.core.clock import Clock
from choreograph.testing import BrokerConformance, ChildBroker

_ROOT = Path(tempfile.mkdtemp(prefix="choreograph-conformance-"))


def teardown_module() -> None:
    shutil.rmtree(_ROOT, ignore_errors=True)


class TestSqliteConformance(BrokerConformance):
    capabilities = SqliteBroker.capabilities
    accepts_clock = True
    lease_timeout = 1.0

    async def make_broker(self, clock: Clock | None = None) -> Broker:
        path = Path(tempfile.mkdtemp(dir=_ROOT)) / "log.db"
        return SqliteBroker.from_url(f"sqlite:///{path}?lease_timeout=1.0", clock=clock)

    async def reopen_broker(self, broker: Broker) -> Broker:
        assert isinstance(broker, SqliteBroker)
        await broker.close()
        return SqliteBroker(broker.path, broker.config)

    def child_broker(self, broker: Broker) -> ChildBroker:
        assert isinstance(broker, SqliteBroker)
        return ChildBroker(url=f"sqlite:///{broker.path}?lease_timeout=1.0")
