"""The flow observer's notices are sealed by its App's security: signed under a service with a key."""

from __future__ import annotations

import pytest

from choreograph import App, FakeClock
from choreograph.brokers.memory import MemoryBroker
from choreograph.core import codec
from choreograph.core.errors import ConfigurationError
from choreograph.core.ids import derived_id
from choreograph.observe.flows import FlowStuck, MemoryFlowStore, Observer, ObserverConfig
from choreograph.security import KeyRing, Security, new_key
from choreograph.security.signing import keyed_id
from tests.conftest import wait_until
from tests.unit.observe.conftest import FLOW, T0, happy_path

FAST = ObserverConfig(fetch_timeout=0.01, check_interval=0.01, dead_letter_interval=0.01, batch_size=3)


async def test_stuck_notices_are_signed_with_the_observers_key_and_their_ids_keyed() -> None:
    # Given an instance stuck after its first step, and an App signing with a key for "flow-observer"
    broker, clock = MemoryBroker(), FakeClock(start=T0 + 10)
    for envelope in happy_path()[:2]:
        await App("plain", broker=broker).publish_envelope(envelope.type, envelope)
    ring = KeyRing([new_key("flow-observer")])
    app = App("shop", broker=broker, security=Security(keys=ring))
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
