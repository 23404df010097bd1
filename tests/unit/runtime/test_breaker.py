"""Circuit breaker: after N consecutive failures the handler pauses; one success closes it."""

from __future__ import annotations

import time

import pytest

from choreograph import App, CircuitBreaker, ConfigurationError, ConsumerConfig, Context, Event, RetryPolicy
from choreograph.brokers.memory import MemoryBroker
from choreograph.runtime.breaker import BreakerState
from tests.conftest import wait_until


class Job(Event, type="t.breaker.job"):
    n: int


def test_opens_after_consecutive_failures_and_a_success_resets_the_count() -> None:
    state = BreakerState(CircuitBreaker(failures=3, open_interval=60))
    state.record(True)
    state.record(True)
    state.record(False)  # a success in between: the count starts again
    state.record(True)
    state.record(True)
    assert not state.is_open
    state.record(True)
    assert state.is_open
    assert state.wait_time() > 59


def test_half_open_failure_reopens_and_success_closes() -> None:
    state = BreakerState(CircuitBreaker(failures=1, open_interval=0.01))
    state.record(True)
    assert state.is_open
    time.sleep(0.02)  # let the (real-time) open interval pass
    assert state.wait_time() == 0 and state.half_open
    state.record(True)
    assert state.is_open and state.opened == 2
    time.sleep(0.02)
    state.wait_time()
    state.record(False)
    assert not state.is_open and not state.half_open


@pytest.mark.parametrize(("failures", "interval"), [(0, 1.0), (1, 0.0)])
def test_bad_settings_are_refused(failures: int, interval: float) -> None:
    with pytest.raises(ConfigurationError):
        CircuitBreaker(failures=failures, open_interval=interval)


async def test_an_open_breaker_stops_calling_the_handler_until_it_half_opens() -> None:
    # Given a handler whose downstream is down, with a breaker at 3 failures
    broker = MemoryBroker(partitions=1)
    app = App("b", broker=broker, consumer=ConsumerConfig(fetch_timeout=0.01, batch_size=1))
    down = True
    calls: list[tuple[int, int]] = []

    @app.service("svc").on(
        Job, retry=RetryPolicy(immediate=0, delayed=50, base_delay=0.01, jitter=0), breaker=CircuitBreaker(3, 0.3)
    )
    async def handle(event: Job, ctx: Context) -> None:
        calls.append((event.n, ctx.attempt))
        if down:
            raise ConnectionError("downstream unavailable")

    await app.publish_many((Job(n=i), "k") for i in range(5))
    await app.start()
    consumer = app._consumers[0]
    assert consumer.breaker is not None
    await wait_until(lambda: consumer.breaker.is_open, what="the breaker to open")  # type: ignore[union-attr]
    # When it is open, the handler is not called at all
    opened_at = len(calls)
    assert opened_at == 3
    await wait_until(lambda: len(calls) > opened_at, what="the half-open trial")
    assert len(calls) == opened_at + 1  # exactly one trial, which fails and re-opens
    assert consumer.breaker.opened == 2
    # Then once the downstream is back, the next trial closes it and everything flows
    down = False
    await wait_until(lambda: sum(1 for n, _ in calls if n == 4) >= 1 and not consumer.breaker.is_open, timeout=10)
    await wait_until(lambda: app.stats()["svc.handle"].handled == 5, timeout=10)
    await app.stop()
    assert app.stats()["svc.handle"].dead_letters == 0
