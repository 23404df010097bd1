"""Shared pieces of the observer tests: a small saga's events and an envelope builder."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from choreograph import Envelope, Event, FakeClock
from choreograph.observe.flows import Compensation, Flow

T0 = 1_800_000_000.0


class Placed(Event, type="test.flow.placed"):
    order_id: str


class Reserved(Event, type="test.flow.reserved"):
    order_id: str


class Charged(Event, type="test.flow.charged"):
    order_id: str


class Declined(Event, type="test.flow.declined"):
    order_id: str


class Released(Event, type="test.flow.released"):
    order_id: str


class Done(Event, type="test.flow.done"):
    order_id: str


class Cancelled(Event, type="test.flow.cancelled"):
    order_id: str


FLOW = Flow(
    "order",
    start=[Placed],
    success=[Done],
    failure=[Cancelled],
    steps=[Reserved, Charged],
    compensations=[Compensation(Reserved, undo=Released, when=[Declined], timeout=5.0)],
    timeout=30.0,
)


def at(seconds: float) -> str:
    """RFC 3339 text of ``T0 + seconds``."""
    return datetime.fromtimestamp(T0 + seconds, UTC).isoformat().replace("+00:00", "Z")


def envelope(event: Event, seconds: float, cause: Envelope | None = None) -> Envelope:
    """An envelope of ``event`` at ``T0 + seconds``, continuing ``cause``'s correlation."""
    env = Envelope.for_event(event, source="test").replace(time=at(seconds))
    return env.caused_by(cause) if cause is not None else env


def happy_path(order_id: str = "o1") -> list[Envelope]:
    """Placed -> Reserved -> Charged -> Done, one second apart."""
    placed = envelope(Placed(order_id=order_id), 0)
    reserved = envelope(Reserved(order_id=order_id), 1, placed)
    charged = envelope(Charged(order_id=order_id), 2, reserved)
    done = envelope(Done(order_id=order_id), 3, charged)
    return [placed, reserved, charged, done]


def declined_path(order_id: str = "o2", *, released: bool = True) -> list[Envelope]:
    """Placed -> Reserved -> Declined [-> Released -> Cancelled]."""
    placed = envelope(Placed(order_id=order_id), 0)
    reserved = envelope(Reserved(order_id=order_id), 1, placed)
    declined = envelope(Declined(order_id=order_id), 2, reserved)
    if not released:
        return [placed, reserved, declined]
    release = envelope(Released(order_id=order_id), 3, declined)
    cancelled = envelope(Cancelled(order_id=order_id), 4, release)
    return [placed, reserved, declined, release, cancelled]


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock at T0 + 10 s."""
    return FakeClock(start=T0 + 10)
