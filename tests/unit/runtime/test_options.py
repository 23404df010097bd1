"""Per-handler options: declared typed, read by type, owned by an installed middleware or refused at start."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import pytest

from choreograph import App, ConfigurationError, Context, Event, RetryPolicy
from choreograph.brokers.memory import MemoryBroker
from choreograph.core.envelope import Envelope
from choreograph.runtime.middleware import Handler, Middleware
from choreograph.runtime.options import HandlerOption, RateLimit
from choreograph.runtime.service import HandlerSpec
from choreograph.testing import TestApp


class Noted(Event, type="options.noted", version=1):
    n: int


class Tagged(Event, type="options.tagged", version=1):
    n: int
    tag: str


@dataclass(frozen=True, slots=True)
class Tag(HandlerOption):
    """A test option: the Tagging middleware stamps ``label`` on the handler's context."""

    label: str
    install_hint = "app.use(Tagging())"


@dataclass(frozen=True, slots=True)
class Orphan(HandlerOption):
    """An option nothing installs."""

    level: int = 1


class Tagging:
    """An OptionsMiddleware owning Tag: built once per handler, absent from handlers without a Tag."""

    owns = (Tag,)

    def __init__(self) -> None:
        self.built_for: list[str] = []

    def for_handler(self, spec: HandlerSpec) -> Middleware | None:
        self.built_for.append(spec.group)
        tag = spec.option(Tag)  # resolved once, here: the wrapper below reads no option list per event
        if tag is None:
            return None
        label = tag.label

        def middleware(handler: Handler) -> Handler:
            async def tagged(envelope: Envelope, ctx: Context) -> None:
                ctx.publish(Tagged(n=envelope.data["n"], tag=label))
                await handler(envelope, ctx)

            return tagged

        return middleware


def test_options_are_stored_on_the_spec_and_read_by_type() -> None:
    # Given a handler declaring two options next to the classic keywords
    app = App("opts", broker=MemoryBroker())
    policy = RetryPolicy(immediate=1, delayed=0)

    @app.service("svc").on(Noted, retry=policy, concurrency=3, options=[RateLimit(per_second=50), Tag("x")])
    async def note(event: Noted, ctx: Context) -> None:
        return None

    # When its spec is read
    (spec,) = app.handlers
    # Then each option comes back by its type, an undeclared one as None, and the keywords are as before
    assert spec.option(RateLimit) == RateLimit(per_second=50)
    assert spec.option(Tag) == Tag("x")
    assert spec.option(Orphan) is None
    assert (spec.retry, spec.concurrency, spec.timeout, spec.dedupe) == (policy, 3, 30.0, True)


def test_a_handler_without_options_has_none() -> None:
    app = App("opts", broker=MemoryBroker())

    @app.service("svc").on(Noted)
    async def note(event: Noted, ctx: Context) -> None:
        return None

    assert app.handlers[0].options == ()
    assert app.handlers[0].option(RateLimit) is None


def test_options_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        RateLimit(per_second=5).per_second = 6  # type: ignore[misc]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ([{"rate": 5}], "options= takes HandlerOption values"),
        ([RateLimit(per_second=5), RateLimit(per_second=6)], "declares RateLimit twice"),
        (RateLimit(per_second=5), "options= takes a list"),
    ],
)
def test_registration_refuses_what_is_not_a_list_of_distinct_options(options: object, message: str) -> None:
    app = App("opts", broker=MemoryBroker())
    with pytest.raises(ConfigurationError, match=message) as caught:

        @app.service("svc").on(Noted, options=options)  # type: ignore[arg-type]
        async def note(event: Noted, ctx: Context) -> None:
            return None

    assert "svc.note" in str(caught.value)
    assert app.handlers == []


@pytest.mark.parametrize("per_second", [0, -1.0, math.nan, math.inf])
def test_rate_limit_refuses_a_rate_that_is_not_a_positive_number(per_second: float) -> None:
    with pytest.raises(ConfigurationError, match="per_second"):
        RateLimit(per_second=per_second)


@pytest.mark.parametrize("burst", [0, -3, True, 2.5])
def test_rate_limit_refuses_a_burst_that_is_not_a_positive_integer(burst: object) -> None:
    with pytest.raises(ConfigurationError, match="burst"):
        RateLimit(per_second=10, burst=burst)  # type: ignore[arg-type]


def test_rate_limit_burst_defaults_to_a_tenth_of_a_second_worth() -> None:
    assert RateLimit(per_second=50).capacity == 5
    assert RateLimit(per_second=1).capacity == 1
    assert RateLimit(per_second=0.2).capacity == 1
    assert RateLimit(per_second=50, burst=20).capacity == 20


async def test_an_option_no_installed_middleware_owns_is_refused_before_anything_runs() -> None:
    # Given a handler declaring an option that no installed middleware owns
    broker = MemoryBroker()
    app = App("opts", broker=broker)
    handled: list[int] = []

    @app.service("svc").on(Noted, options=[Orphan(level=2)])
    async def note(event: Noted, ctx: Context) -> None:
        handled.append(event.n)

    await app.publish(Noted(n=1))
    # When the app starts
    with pytest.raises(ConfigurationError) as caught:
        await app.start()
    # Then it refuses, naming the option, the handler and the fix, and no consumer was started
    message = str(caught.value)
    assert "Orphan(level=2)" in message
    assert "svc.note" in message
    assert "app.use(" in message
    assert app.stats() == {}
    with pytest.raises(ConfigurationError, match="Orphan"):
        app.check_options()  # the same check, without starting
    await app.close()
    assert handled == []


def test_the_refusal_shows_the_option_install_hint() -> None:
    app = App("opts", broker=MemoryBroker())

    @app.service("svc").on(Noted, options=[Tag("x")])
    async def note(event: Noted, ctx: Context) -> None:
        return None

    with pytest.raises(ConfigurationError, match=r"app\.use\(Tagging\(\)\)"):
        app.check_options()
    app.use(Tagging())
    app.check_options()  # owned now


async def test_an_options_middleware_acts_on_the_handlers_that_declare_its_option() -> None:
    # Given a middleware owning Tag, one handler declaring a Tag and one without
    app = App("opts")
    tagging = Tagging()
    app.use(tagging)
    seen: dict[str, list[int]] = {"tagged": [], "plain": []}

    @app.service("svc").on(Noted, options=[Tag("gold")])
    async def tagged(event: Noted, ctx: Context) -> None:
        seen["tagged"].append(event.n)

    @app.service("svc").on(Noted)
    async def plain(event: Noted, ctx: Context) -> None:
        seen["plain"].append(event.n)

    # When events are handled
    async with TestApp(app) as t:
        for n in range(3):
            await t.publish(Noted(n=n), key=str(n))
        await t.drain()
        # Then the middleware was built once per handler and acted only where its option was declared
        assert sorted(tagging.built_for) == ["svc.plain", "svc.tagged"]
        assert {name: sorted(ns) for name, ns in seen.items()} == {"tagged": [0, 1, 2], "plain": [0, 1, 2]}
        assert sorted((e.n, e.tag) for e in t.published(Tagged)) == [(0, "gold"), (1, "gold"), (2, "gold")]


def test_context_has_typed_fields_instead_of_a_string_keyed_dict() -> None:
    names = {f.name for f in dataclasses.fields(Context)}
    assert {"seen", "stack"} <= names
    assert "extra" not in names
