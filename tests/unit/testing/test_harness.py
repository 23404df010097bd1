"""TestApp: publish, drain without polling, fast-forwarded retries, dead letters, timeouts, what was published."""

from __future__ import annotations

import asyncio
import time

import pytest

from choreograph import App, ConfigurationError, ConsumerConfig, Context, Event, FakeClock, RetryPolicy
from choreograph.brokers.memory import MemoryBroker
from choreograph.runtime.retry import NO_RETRY
from choreograph.testing import DrainTimeout, TestApp, UnexpectedDeadLetter


class Ordered(Event, type="harness.order.placed", version=1):
    order_id: str
    total_cents: int = 100


class Charged(Event, type="harness.payment.charged", version=1):
    order_id: str
    amount_cents: int


class Receipted(Event, type="harness.receipt.sent", version=1):
    order_id: str


def pipeline_app(**kwargs: object) -> App:
    """Ordered -> payment.charge -> Charged -> mail.receipt -> Receipted."""
    app = App("harness", **kwargs)  # type: ignore[arg-type]

    @app.service("payment").on(Ordered)
    async def charge(event: Ordered, ctx: Context) -> Charged:
        return Charged(order_id=event.order_id, amount_cents=event.total_cents)

    @app.service("mail").on(Charged)
    async def receipt(event: Charged, ctx: Context) -> Receipted:
        return Receipted(order_id=event.order_id)

    return app


async def test_drain_returns_once_every_handler_downstream_has_run() -> None:
    # Given a two-step pipeline under the harness
    async with TestApp(pipeline_app()) as t:
        # When an order is published and the app drained
        placed = await t.publish(Ordered(order_id="o1", total_cents=250), key="o1")
        await t.drain()
        # Then both steps ran and their outputs are readable, parsed into their classes
        assert t.published(Charged) == [Charged(order_id="o1", amount_cents=250)]
        assert t.published(Receipted) == [Receipted(order_id="o1")]
        # and every envelope continues the published correlation, in commit order
        envelopes = t.envelopes()
        assert [env.type for env in envelopes] == [
            "harness.order.placed",
            "harness.payment.charged",
            "harness.receipt.sent",
        ]
        assert {env.correlationid for env in envelopes} == {placed.id}
        assert t.app.stats()["mail.receipt"].handled == 1
        assert t.dead_letters == []


async def test_published_reads_per_type_and_envelopes_per_topic() -> None:
    # Given the pipeline fed by the harness and by the app itself
    async with TestApp(pipeline_app()) as t:
        await t.publish(Ordered(order_id="o1"), key="o1")
        await t.app.publish(Ordered(order_id="o2"), key="o2")  # a publish the harness did not make is seen too
        await t.drain()
        # Then published() filters by type and envelopes() by topic
        assert sorted(e.order_id for e in t.published(Ordered)) == ["o1", "o2"]
        assert sorted(e.order_id for e in t.published(Receipted)) == ["o1", "o2"]
        charged = t.envelopes(Charged.topic())
        assert sorted(env.data["order_id"] for env in charged) == ["o1", "o2"]
        assert all(env.type == "harness.payment.charged" for env in charged)
        assert t.envelopes("harness.nothing") == []
        assert len(t.envelopes()) == 6


async def test_a_delayed_retry_is_fast_forwarded_and_succeeds_on_the_second_attempt() -> None:
    # Given a handler that fails its first attempt and retries a minute later
    attempts: list[int] = []
    app = App("retrying")

    @app.service("payment").on(Ordered, retry=RetryPolicy(immediate=0, delayed=2, base_delay=60.0, jitter=0.0))
    async def charge(event: Ordered, ctx: Context) -> Charged:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise ConnectionError("gateway timed out")
        return Charged(order_id=event.order_id, amount_cents=event.total_cents)

    started = time.monotonic()
    async with TestApp(app) as t:
        assert t.clock is not None
        before = t.clock.now()
        # When an order is published and drained
        await t.publish(Ordered(order_id="o1"), key="o1")
        await t.drain()
        # Then the second attempt succeeded after the broker's clock moved exactly the retry delay
        assert attempts == [1, 2]
        assert t.clock.now() - before == pytest.approx(60.0)
        assert t.published(Charged) == [Charged(order_id="o1", amount_cents=100)]
        assert t.app.stats()["payment.charge"].retries == 1
    # and the minute was not waited for
    assert time.monotonic() - started < 30


async def test_without_fast_forward_drain_waits_for_the_retry_delay_in_real_time() -> None:
    # Given a handler failing once, retried after 50 ms of real time
    attempts: list[int] = []
    app = App("waiting")

    @app.service("payment").on(Ordered, retry=RetryPolicy(immediate=0, delayed=1, base_delay=0.05, jitter=0.0))
    async def charge(event: Ordered, ctx: Context) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise ConnectionError("gateway timed out")

    async with TestApp(app, fast_forward=False) as t:
        assert t.clock is None
        started = time.monotonic()
        await t.publish(Ordered(order_id="o1"), key="o1")
        await t.drain()
        # Then drain returned after the delay, with the retry done
        assert attempts == [1, 2]
        assert time.monotonic() - started >= 0.05


async def test_records_queued_behind_a_waiting_retry_of_their_key_are_drained_in_order() -> None:
    # Given one record per fetch, and a handler whose first event fails once with a long delay
    handled: list[tuple[str, int]] = []
    app = App("ordered", consumer=ConsumerConfig(batch_size=1, fetch_timeout=0.05))

    @app.service("payment").on(Ordered, retry=RetryPolicy(immediate=0, delayed=1, base_delay=10.0, jitter=0.0))
    async def charge(event: Ordered, ctx: Context) -> None:
        handled.append((event.order_id, ctx.attempt))
        if event.order_id == "first" and ctx.attempt == 1:
            raise ConnectionError("gateway timed out")

    async with TestApp(app) as t:
        # When two events of one key are published
        await t.publish(Ordered(order_id="first"), key="k")
        await t.publish(Ordered(order_id="second"), key="k")
        await t.drain()
    # Then the second waited for the first's retry (drain moved time past it instead of hanging)
    assert handled == [("first", 1), ("first", 2), ("second", 1)]


def failing_app(retry: RetryPolicy = NO_RETRY) -> App:
    app = App("failing")

    @app.service("payment").on(Ordered, retry=retry)
    async def charge(event: Ordered, ctx: Context) -> None:
        raise ValueError(f"card of order {event.order_id} is unreadable")

    return app


async def test_drain_raises_on_a_dead_letter_showing_reason_error_and_event() -> None:
    # Given a handler that always fails, with two delayed retries
    async with TestApp(failing_app(RetryPolicy(immediate=1, delayed=2, base_delay=5.0))) as t:
        await t.publish(Ordered(order_id="o7", total_cents=4200), key="o7")
        # When drained
        with pytest.raises(UnexpectedDeadLetter) as raised:
            await t.drain()
        # Then the error says which group gave up on which event, why, with the event's data and the stack
        message = str(raised.value)
        assert "payment.charge dead-lettered harness.order.placed" in message
        assert "after 4 attempt(s), reason 'error'" in message
        assert "ValueError: card of order o7 is unreadable" in message
        assert '"order_id": "o7"' in message and '"total_cents": 4200' in message
        assert "handler traceback:" in message and "in charge" in message
        assert raised.value.dead_letter.event_type == "harness.order.placed"
        assert raised.value.dead_letter.attempts == 4
        # and a dead letter is raised once: the next drain finds the app idle
        await t.drain()
        assert len(t.dead_letters) == 1


async def test_dead_letters_are_collected_when_asked_not_to_raise() -> None:
    # Given the harness told to collect dead letters
    async with TestApp(failing_app(), raise_on_dead_letter=False) as t:
        # When two events fail for good
        await t.publish(Ordered(order_id="o1"), key="o1")
        await t.publish(Ordered(order_id="o2"), key="o2")
        await t.drain()
        # Then drain returns and both are readable
        letters = t.dead_letters
        assert sorted(letter.key or "" for letter in letters) == ["o1", "o2"]
        assert {letter.reason for letter in letters} == {"error"}
        assert {letter.error_type for letter in letters} == {"ValueError"}
        assert len(await t.broker.dead_letters()) == 2


async def test_drain_timeout_names_the_groups_still_behind() -> None:
    # Given a handler blocked until the test lets it go
    release = asyncio.Event()
    app = App("stuck")

    @app.service("payment").on(Ordered, timeout=None)
    async def charge(event: Ordered, ctx: Context) -> None:
        await release.wait()

    @app.service("mail").on(Charged)
    async def receipt(event: Charged, ctx: Context) -> None:
        return None

    async with TestApp(app) as t:
        await t.publish(Ordered(order_id="o1"), key="o1")
        # When drained with a short timeout
        with pytest.raises(DrainTimeout) as raised:
            await t.drain(timeout=0.2)
        # Then the error names the group behind (and not the idle one) and what it is doing
        assert raised.value.groups == ["payment.charge"]
        message = str(raised.value)
        assert "drain timed out after 0.2s with 1 consumer group(s) still behind" in message
        assert "payment.charge on harness.order.placed: 1 record(s) behind, records in flight or ready" in message
        # and once the handler is let go, drain completes
        release.set()
        await t.drain()
        assert t.app.stats()["payment.charge"].handled == 1


async def test_drain_timeout_shows_a_retry_waiting_in_real_time() -> None:
    # Given real time and a handler whose retry is due in a minute
    async with TestApp(
        failing_app(RetryPolicy(immediate=0, delayed=1, base_delay=60.0, jitter=0.0)), fast_forward=False
    ) as t:
        await t.publish(Ordered(order_id="o1"), key="o1")
        # When drained with a short timeout
        with pytest.raises(
            DrainTimeout,
            match=r"payment.charge on harness.order.placed: 1 record\(s\) behind, "
            r"next retry due in 5\d\.\d{3}s",
        ):
            await t.drain(timeout=0.2)


async def test_an_app_can_run_under_one_test_app_only() -> None:
    # Given an app already run by a TestApp
    app = pipeline_app()
    async with TestApp(app) as t:
        await t.publish(Ordered(order_id="o1"), key="o1")
        await t.drain()
    # When a second TestApp is entered on it, then it says to build a fresh App
    with pytest.raises(ConfigurationError, match="build a fresh App for each TestApp"):
        async with TestApp(app):
            pass


async def test_an_app_built_with_a_memory_broker_keeps_it_and_its_clock() -> None:
    # Given an app built on a memory broker with a fake clock
    clock = FakeClock()
    broker = MemoryBroker(clock=clock)
    async with TestApp(pipeline_app(broker=broker)) as t:
        # Then the harness runs on that broker and fast-forwards that clock
        assert t.broker is broker
        assert t.clock is clock
        await t.publish(Ordered(order_id="o1"), key="o1")
        await t.drain()
        assert len(t.published(Receipted)) == 1


async def test_refuses_what_it_cannot_run() -> None:
    # A memory broker on the wall clock cannot be fast-forwarded
    with pytest.raises(ConfigurationError, match="needs a FakeClock"):
        async with TestApp(pipeline_app(broker=MemoryBroker())):
            pass
    # an unknown service is named
    with pytest.raises(ConfigurationError, match="unknown service"):
        TestApp(pipeline_app(), services=["billing"])
    # and nothing works before entering
    with pytest.raises(ConfigurationError, match="enter the TestApp first"):
        await TestApp(pipeline_app()).publish(Ordered(order_id="o1"))


async def test_services_selects_which_handlers_run() -> None:
    # Given only the payment service running
    async with TestApp(pipeline_app(), services=["payment"]) as t:
        await t.publish(Ordered(order_id="o1"), key="o1")
        await t.drain()
        # Then its output is published and nobody handled it
        assert len(t.published(Charged)) == 1
        assert t.published(Receipted) == []
        assert set(t.app.stats()) == {"payment.charge"}
