"""An observer started long after the traffic: the scenario every backend runs (unit and broker tests).

It publishes, before any observer exists, many instances that all finished
within their 30 s deadline and one that never went past its start; then it
starts an observer whose clock reads 40 s after the last event, reading in
small batches. The observer must report the stuck instance, once, and no
finished one.
"""

from __future__ import annotations

from choreograph import App, FakeClock
from choreograph.core import codec
from choreograph.core.broker import LogReader
from choreograph.observe.flows import FlowStore, FlowStuck, Observer, ObserverConfig
from tests.conftest import wait_until
from tests.unit.observe.conftest import FLOW, T0, Placed, envelope, happy_path

LATE = ObserverConfig(fetch_timeout=0.05, check_interval=0.01, dead_letter_interval=0.05, batch_size=7)


async def observer_started_after_traffic(app: App, store: FlowStore, *, finished: int = 60) -> None:
    """Run the scenario on ``app``'s broker; raise AssertionError if the observer gets it wrong."""
    # Given traffic that ran to completion before any observer: `finished` instances and one stuck one
    envelopes = [env for n in range(finished) for env in happy_path(f"done-{n}")]
    stuck = envelope(Placed(order_id="stuck"), 0)
    for env in [*envelopes, stuck]:
        await app.publish_envelope(env.type, env)
    # When an observer starts 40 s after the last event (the deadline is 30 s)
    clock = FakeClock(start=T0 + 3 + 40)
    observer = Observer(app, [FLOW], store=store, clock=clock, config=LATE)
    await observer.start()
    try:
        await wait_until(lambda: observer.progress.caught_up(FLOW.name), 60, "the observer to catch up")
        await wait_until(lambda: observer.stats.notices_published >= finished + 1, 30, "the notices")
        await observer.check()
    finally:
        await observer.stop()
    # Then exactly the stuck instance is reported, once, and every finished one counted as completed
    broker = app.broker
    assert isinstance(broker, LogReader)
    reported = [codec.decode(d.value) for d in await broker.read(FlowStuck.topic(), limit=10_000)]
    assert [env.correlationid for env in reported] == [stuck.id]
    figures = observer.figures()[FLOW.name]
    assert (figures.completed, figures.stuck) == (finished, 1)
