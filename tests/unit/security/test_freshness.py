"""``Security(max_age=...)``: a replay guard beyond the inbox window, refusing events older than the window."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from choreograph.core.envelope import Envelope, now_rfc3339
from choreograph.core.errors import ConfigurationError
from choreograph.examples.shop.events import InventoryReserved
from choreograph.security import KeyRing, Security, SecurityError, SignatureError
from choreograph.testing import TestApp
from tests.unit.security.conftest import payment_step


def event(stamp: str | None) -> Envelope:
    return Envelope(id="e-1", source="inventory", type="t", data={}, time=stamp)


async def sealed(ring: KeyRing, stamp: str | None) -> Envelope:
    return (await Security(keys=ring).seal([event(stamp)]))[0]


async def test_a_signed_event_older_than_max_age_is_refused_and_a_fresh_one_opens(ring: KeyRing) -> None:
    # Given a verifier with a one-minute window, its clock at 08:00:00 UTC
    noon = 1_800_000_000.0
    security = Security(keys=ring, max_age=60, clock=lambda: noon)
    # Then an event of 07:59:30 opens, one of 07:58:00 and one of 08:02:00 are refused with reason signature
    assert (await security.open(await sealed(ring, "2027-01-15T07:59:30Z"))).id == "e-1"
    with pytest.raises(SignatureError, match=r"is 120s old, over max_age 60s") as old:
        await security.open(await sealed(ring, "2027-01-15T07:58:00Z"))
    assert old.value.reason == "signature"
    with pytest.raises(SignatureError, match="in the future"):
        await security.open(await sealed(ring, "2027-01-15T08:02:00Z"))
    with pytest.raises(SignatureError, match="no readable time"):
        await security.open(await sealed(ring, None))


async def test_a_replayed_capture_past_the_window_is_dead_lettered(ring: KeyRing) -> None:
    # Given a genuine signed reservation, published an hour before the consumers run
    step = payment_step(Security(keys=ring, max_age=600, clock=lambda: time.time() + 3600))
    reserved = (await Security(keys=ring).seal([
        Envelope.for_event(InventoryReserved(order_id="o-1", total_cents=5), source="inventory", key="o-1")
    ]))[0]  # fmt: skip
    assert reserved.time is not None and reserved.time <= now_rfc3339()
    await step.app.publish_envelope(InventoryReserved.topic(), reserved)
    # When the services run with a ten-minute window
    async with TestApp(step.app, raise_on_dead_letter=False) as t:
        await t.drain()
        letters = t.dead_letters
    # Then it is dead-lettered as stale, reason signature, and nothing shipped
    assert [(d.reason, "over max_age" in d.error_message) for d in letters] == [("signature", True)]
    assert step.shipped == []


@pytest.mark.parametrize("max_age", [0, -1, float("nan"), float("inf")])
def test_max_age_must_be_a_positive_number(max_age: float) -> None:
    with pytest.raises(ConfigurationError, match="max_age"):
        Security(max_age=max_age)


@settings(max_examples=300, deadline=None)
@given(stamp=st.one_of(st.none(), st.text(max_size=80), st.datetimes().map(lambda d: d.isoformat())))
def test_any_time_attribute_gives_an_open_event_or_a_security_error(stamp: str | None) -> None:
    security = Security(require_signatures=False, max_age=60, clock=lambda: 1_800_000_000.0)
    with contextlib.suppress(SecurityError):  # anything else fails the test
        asyncio.run(security.open(event(stamp)))
