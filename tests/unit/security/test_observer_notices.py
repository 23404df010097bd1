"""The flow observer's notices are sealed by its App's security: signed under a service with a key."""

from __future__ import annotations

import pytest

from choreograph import App, ConsumerConfig, Context, FakeClock, Reject
from choreograph.brokers.memory import MemoryBroker
from choreograph.core import codec
from choreograph.core.errors import ConfigurationError
from choreograph.core.ids import derived_id
from choreograph.observe.flows import FlowStuck, MemoryFlowStore, Observer, ObserverConfig
from choreograph.security import KeyRing, Security, new_key
from choreograph.security.signing import keyed_id
from choreograph.testing import TestApp
from tests.conftest import wait_until
from tests.unit.observe.conftest import FLOW, T0, Declined, declined_path, happy_path

FAST_CONSUMER = ConsumerConfig(fetch_timeout=0.02)
FAST = ObserverConfig(fetch_timeout=0.01, check_interval=0.01, dead_letter_interval=0.01, batch_size=3)


async def test_stuck_notices_are_signed_with_the_observers_key_and_their_ids_keyed() -> None:
    # Given an instance stuck after its first steps, and an App signing with a key for "flow-observer"
    broker, clock = MemoryBroker(), FakeClock(start=T0 + 10)
    ring = KeyRing([new_key("flow-observer"), new_key("test")])
    app = App("shop", broker=broker, security=Security(keys=ring))
    for envelope in happy_path()[:2]:  # signed by their source, as the observer of a signing app requires
        await app.publish_envelope(envelope.type, envelope)
    observer = Observer(app, [FLOW], store=MemoryFlowStore(), clock=clock, config=FAST, source="flow-observer")
    # When the deadline passes
    await observer.start()
    await wait_until(lambda: observer.figures()["order"].in_flight == 1, 5, "the instance to be seen")
    clock.advance(21)
    await observer.check()
    await wait_until(lambda: observer.stats.notices_published == 1, 5, "the stuck notice")
    await observer.stop()
    # Then the FlowStuck notice is signed by flow-observer and verifies; its id is not the public derived one
    (record,) = await broker.read(FlowStuck.topic())
    stuck = codec.decode(record.value)
    assert stuck.source == "flow-observer" and stuck.extensions["signaturekey"].startswith("flow-observer.")
    opened = await Security(keys=KeyRing(verification=ring.verification_keys())).open(stuck)
    assert opened.data["waiting_for"] == ["test.flow.charged"]
    correlation = stuck.correlationid
    assert correlation is not None
    public = derived_id(correlation, f"{FLOW.group}:stuck", 0)
    key = ring.signing_key("flow-observer")
    assert key is not None
    assert stuck.id == keyed_id(key.id_secret(), public) != public


async def test_an_observer_of_a_signing_app_without_a_key_for_its_source_is_refused() -> None:
    # Given an App that signs, and an observer under the default source (which cannot own a key)
    app = App("shop", broker=MemoryBroker(), security=Security(keys=KeyRing([new_key("payment")])))
    observer = Observer(app, [FLOW], store=MemoryFlowStore(), config=FAST)
    # When it starts, Then it is refused, naming the fix
    with pytest.raises(ConfigurationError, match="keys generate flow-observer"):
        await observer.start()


async def test_the_observer_of_a_signing_app_ignores_a_forged_event() -> None:
    # Given a signing App: the first two steps of an order signed by their source, then a forged (unsigned) Done
    ring = KeyRing([new_key("test"), new_key("flow-observer")])
    broker, clock = MemoryBroker(), FakeClock(start=T0 + 10)
    app = App("shop", broker=broker, security=Security(keys=ring))
    placed, reserved, _, done = happy_path()
    for envelope in (placed, reserved):
        await app.publish_envelope(envelope.type, envelope)
    await App("plain", broker=broker).publish_envelope(done.type, done)
    # When the observer reads them
    observer = Observer(app, [FLOW], store=MemoryFlowStore(), clock=clock, config=FAST, source="flow-observer")
    await observer.start()
    await wait_until(lambda: observer.stats.events == 3, 5, "the three events")
    await observer.stop()
    # Then the forgery was ignored and counted: the order is still in flight, not completed
    figures = observer.figures()["order"]
    assert (figures.in_flight, figures.completed, observer.stats.refused) == (1, 0, 1)


async def test_a_forgerys_dead_letter_does_not_mark_a_real_instances_compensation_failed() -> None:
    # Given a signing App whose "test" service rejects every Declined: order a gets a forged (unsigned) Declined,
    # dead-lettered 'signature'; order b a genuine one, dead-lettered 'reject'
    ring = KeyRing([new_key("test"), new_key("flow-observer")])
    clock = FakeClock(start=T0 + 10)
    broker = MemoryBroker(clock=clock)
    app = App("shop", broker=broker, consumer=FAST_CONSUMER, security=Security(keys=ring))

    @app.service("test").on(Declined)
    async def refuse(event: Declined, ctx: Context) -> None:
        raise Reject("declines are refused here")

    a, b = declined_path("a", released=False), declined_path("b", released=False)
    async with TestApp(app, raise_on_dead_letter=False) as t:
        for envelope in (*a[:2], *b):
            await app.publish_envelope(envelope.type, envelope)
        await App("plain", broker=broker).publish_envelope(a[2].type, a[2])
        await t.drain()
        assert sorted(d.reason for d in t.dead_letters) == ["reject", "signature"]
        # When the observer reads the flow and scans the dead letters
        observer = Observer(app, [FLOW], store=MemoryFlowStore(), clock=clock, config=FAST, source="flow-observer")
        await observer.start()
        await wait_until(lambda: observer.stats.events == 6, 5, "the six events")
        changed = await observer.scan_dead_letters()
        await observer.stop()
    # Then only order b's compensation is marked failed
    instance_a, instance_b = observer.instance(FLOW.name, a[0].id), observer.instance(FLOW.name, b[0].id)
    assert instance_a is not None and instance_b is not None
    assert (changed, bool(instance_a.failed_compensations), bool(instance_b.failed_compensations)) == (1, False, True)
