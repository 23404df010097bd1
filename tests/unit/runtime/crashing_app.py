"""An app whose backend has a bug: its subscribe raises RuntimeError (not a BrokerError) every time.

Run by test_run_fail_fast.py as ``choreograph run tests.unit.runtime.crashing_app:app``.
"""

from __future__ import annotations

from choreograph import App, Context, Event
from choreograph.brokers.memory import MemoryBroker, MemorySubscription
from choreograph.core.broker import Position

EARLIEST = Position.earliest()


class BuggyBroker(MemoryBroker):
    async def subscribe(self, topic: str, group: str, *, start: Position = EARLIEST) -> MemorySubscription:
        raise RuntimeError(f"a bug in the backend while subscribing {group}")


class Tick(Event, type="crash.tick"):
    n: int


app = App("crash", broker=BuggyBroker())


@app.service("svc").on(Tick)
async def tick(event: Tick, ctx: Context) -> None:
    return None
