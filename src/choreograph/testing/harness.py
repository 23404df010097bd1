"""TestApp: run your App on the in-memory broker and wait until it has nothing left to do.

::

    async with TestApp(app) as t:
        await t.publish(OrderPlaced(order_id="o1", ...), key="o1")
        await t.drain()
        assert t.published(OrderCompleted) == [OrderCompleted(order_id="o1")]

The app runs for real — its consumers, middleware, retries, inbox and dead
letters — on a :class:`~choreograph.brokers.memory.MemoryBroker`.
:meth:`TestApp.drain` returns when every consumer group of the app has settled
every record and no retry is waiting; it wakes on each settled batch (a settle
listener), never by polling.

Delayed retries are fast-forwarded by default: the broker runs on a
:class:`~choreograph.core.clock.FakeClock`, and when all the app has left are
retries due later, drain moves that clock to the earliest one. Work that is
ready always runs before time moves, so handlers see the order they would see
in real time, without the wait. With ``fast_forward=False`` the broker uses
the wall clock and drain waits for each delay (its timeout must cover them).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import TypeVar

from choreograph.brokers.memory import MemoryBroker
from choreograph.core import codec
from choreograph.core.broker import DeadLetter, Settlement
from choreograph.core.clock import FakeClock
from choreograph.core.envelope import Envelope
from choreograph.core.errors import BrokerUnavailable, ConfigurationError
from choreograph.core.event import Event
from choreograph.runtime.app import App
from choreograph.runtime.middleware import Publisher
from choreograph.runtime.service import HandlerSpec
from choreograph.security.errors import SecurityError

E = TypeVar("E", bound=Event)

_IN_USE = (
    "TestApp needs an app whose broker is not in use yet ({problem}); an App keeps its broker, "
    "so build a fresh App for each TestApp (in a function or a fixture)"
)
_SHOWN_DATA = 2000
"""Characters of an event's data shown in an UnexpectedDeadLetter message."""


class UnexpectedDeadLetter(AssertionError):
    """The app dead-lettered an event while a :class:`TestApp` expected none. ``dead_letter`` holds it."""

    def __init__(self, dead_letter: DeadLetter) -> None:
        super().__init__(_describe(dead_letter))
        self.dead_letter = dead_letter


class DrainTimeout(AssertionError):
    """:meth:`TestApp.drain` gave up: ``groups`` were still behind after ``timeout`` seconds."""

    def __init__(self, timeout: float, groups: Sequence[str], details: Sequence[str]) -> None:
        super().__init__(
            f"drain timed out after {timeout}s with {len(groups)} consumer group(s) still behind:\n  "
            + "\n  ".join(details)
        )
        self.timeout = timeout
        self.groups = list(groups)


def _describe(letter: DeadLetter) -> str:
    """Return a dead letter as a test failure shows it: who gave up on which event, why, and the stack."""
    event = f"{letter.event_type or 'an undecodable record'} {letter.event_id or ''}".rstrip()
    lines = [
        f"{letter.group} dead-lettered {event} (key {letter.key!r}) after {letter.attempts} attempt(s), "
        f"reason {letter.reason!r}",
        f"  error: {letter.error_type}: {letter.error_message}",
        f"  event: {_shown(letter.value)}",
    ]
    if letter.stack:
        lines.append("  handler traceback:")
        lines.extend(f"    {line}" for line in letter.stack.rstrip().splitlines())
    return "\n".join(lines)


def _shown(value: bytes) -> str:
    try:
        text = json.dumps(codec.decode(value).data, default=str, sort_keys=True)
    except Exception:  # whatever the bytes are, the failure report must still be shown
        text = repr(value)
    return text if len(text) <= _SHOWN_DATA else text[:_SHOWN_DATA] + "…"


class _Recorder:
    """Settle listener and publisher middleware of one TestApp: records what happened and wakes drain.

    ``envelopes`` are as sent (sealed when the app has ``security=``);
    ``opened`` holds, by index into them, the decrypted form of encrypted
    ones: at once for ``app.publish``, when drain returns for handler outputs
    (a settle listener cannot await the key store).
    """

    def __init__(self, decrypt: Callable[[Envelope], Awaitable[Envelope]] | None = None) -> None:
        self.active = False
        self.changed = asyncio.Event()
        self.envelopes: list[tuple[str, Envelope]] = []
        self.dead_letters: list[DeadLetter] = []
        self.opened: dict[int, Envelope] = {}
        self._decrypt = decrypt
        self._sealed: list[int] = []

    def settled(self, spec: HandlerSpec, settlement: Settlement, seconds: float) -> None:
        if not self.active:  # a listener stays on its app; a finished TestApp ignores later settles
            return
        start = len(self.envelopes)
        self.envelopes.extend((topic, codec.decode(record.value)) for topic, record in settlement.outputs)
        if self._decrypt is not None:
            self._sealed.extend(range(start, len(self.envelopes)))
        self.dead_letters.extend(letter for _, letter in settlement.dead_letters)
        self.changed.set()

    def publisher(self, publish: Publisher) -> Publisher:
        async def recorded(topic: str, envelopes: list[Envelope]) -> list[Envelope]:
            sent = await publish(topic, envelopes)
            if self.active:
                start = len(self.envelopes)
                self.envelopes.extend((topic, envelope) for envelope in sent)
                if self._decrypt is not None:
                    self._sealed.extend(range(start, len(self.envelopes)))
                    await self.open_sealed()
            return sent

        return recorded

    async def open_sealed(self) -> None:
        """Decrypt what was recorded sealed since the last call; what does not decrypt stays as sent."""
        decrypt, pending, self._sealed = self._decrypt, self._sealed, []
        if decrypt is None:
            return
        for index in pending:
            envelope = self.envelopes[index][1]
            try:
                opened = await decrypt(envelope)
            except SecurityError:  # a forgotten data key, say: the test sees "<encrypted>", as a consumer would
                continue
            if opened is not envelope:
                self.opened[index] = opened


class TestApp:
    """Run ``app`` on the in-memory broker inside ``async with``; publish, drain, and read what happened.

    Entering starts a consumer per handler of ``services`` (all by default),
    each group positioned (per its ``start``) before anything is published;
    leaving stops them (handlers still running after ``stop_timeout`` seconds
    are cancelled) and closes the broker. An App holds on to its broker, so
    use a fresh App per TestApp: build it in a function or fixture.

    ``fast_forward`` (default) runs the broker on a FakeClock that
    :meth:`drain` moves to the next retry's due time when nothing else is
    left to do — the app's own clock if it is a FakeClock, so dead-letter
    times agree, else a new one starting at the current time. Without it the
    broker keeps real time and drain waits for delayed retries.

    ``raise_on_dead_letter`` (default) makes :meth:`drain` raise
    :class:`UnexpectedDeadLetter` for each new dead letter; without it dead
    letters are only collected in :attr:`dead_letters`. Not safe to share
    between event loops; use from the loop that entered it.
    """

    __test__ = False  # not a pytest test class, whatever its name

    def __init__(
        self,
        app: App,
        *,
        services: Sequence[str] | None = None,
        fast_forward: bool = True,
        raise_on_dead_letter: bool = True,
        drain_timeout: float = 10.0,
        stop_timeout: float = 5.0,
    ) -> None:
        if drain_timeout <= 0 or stop_timeout <= 0:
            raise ConfigurationError("drain_timeout and stop_timeout are seconds > 0")
        self.app = app
        self._services = list(services) if services else None
        unknown = [name for name in self._services or () if name not in app.services]
        if unknown:
            raise ConfigurationError(
                f"unknown service(s) {', '.join(unknown)}; this app has: {', '.join(app.services) or 'none'}"
            )
        self._fast_forward = fast_forward
        self._raise_on_dead_letter = raise_on_dead_letter
        self._drain_timeout = drain_timeout
        self._stop_timeout = stop_timeout
        self._specs: list[HandlerSpec] = []
        encryption = app.security.encryption if app.security is not None else None
        self._recorder = _Recorder(encryption.decrypt if encryption is not None else None)
        self._reported = 0
        self._broker: MemoryBroker | None = None
        self._clock: FakeClock | None = None

    # -- lifecycle -----------------------------------------------------------

    async def __aenter__(self) -> TestApp:
        broker = await self._memory_broker()
        self._broker = broker
        app = self.app
        services = self._services or list(app.services)
        self._specs = [spec for name in services for spec in app.services[name].handlers]
        app.add_listener(self._recorder)
        app.use_publisher(self._recorder.publisher)
        # Position every group now, as its consumer will: a drain right after the first publish must
        # see the group behind, not absent (an absent group counts as idle).
        for spec in self._specs:
            subscription = await broker.subscribe(spec.topic, spec.group, start=spec.start)
            await subscription.close()
        self._recorder.active = True
        try:
            await app.start(services)
        except BaseException:
            self._recorder.active = False
            await app.close()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # stop() asks every consumer to stop before it first waits; the wake queued here then runs and
        # returns their waiting fetches at once, instead of after the app's fetch timeout.
        asyncio.get_running_loop().call_soon(self.broker.wake)
        try:
            await self.app.stop(self._stop_timeout)
        finally:
            self._recorder.active = False
            await self.app.close()

    async def _memory_broker(self) -> MemoryBroker:
        app = self.app
        if app.broker_url == "<instance>":  # built with a broker object: use it if it is a memory broker
            given = app.broker
            if not isinstance(given, MemoryBroker):
                raise ConfigurationError(
                    f"TestApp runs the app on the in-memory broker; this app was built with a "
                    f"{type(given).__name__}: build it without a broker (or with a MemoryBroker) for tests"
                )
            try:
                await given.ping()
            except BrokerUnavailable as exc:
                raise ConfigurationError(_IN_USE.format(problem="its memory broker is closed")) from exc
            if self._fast_forward:
                if not isinstance(given.clock, FakeClock):
                    raise ConfigurationError(
                        "to fast-forward retries the app's MemoryBroker needs a FakeClock: "
                        "MemoryBroker(clock=FakeClock()), or TestApp(app, fast_forward=False)"
                    )
                self._clock = given.clock
            return given
        if self._fast_forward:
            self._clock = app.clock if isinstance(app.clock, FakeClock) else FakeClock(start=time.time())
        broker = MemoryBroker(clock=self._clock)
        try:
            app.configure_broker(broker)
        except ConfigurationError as exc:
            raise ConfigurationError(_IN_USE.format(problem=exc)) from exc
        return broker

    # -- acting ----------------------------------------------------------------

    @property
    def broker(self) -> MemoryBroker:
        """The in-memory broker the app runs on (to read topics, lag or dead letters directly)."""
        return self._entered()

    def _entered(self) -> MemoryBroker:
        if self._broker is None:
            raise ConfigurationError("enter the TestApp first: async with TestApp(app) as t")
        return self._broker

    @property
    def clock(self) -> FakeClock | None:
        """The broker's FakeClock that drain fast-forwards, or None without ``fast_forward``."""
        return self._clock

    async def publish(self, event: Event, *, key: str | None = None, subject: str | None = None) -> Envelope:
        """Publish ``event`` through the app (a new correlation); return its envelope. Does not wait for handlers."""
        self._entered()
        return await self.app.publish(event, key=key, subject=subject)

    async def drain(self, timeout: float | None = None) -> None:
        """Return when every consumer group of the app has settled every record and no retry is waiting.

        Events that handlers emit are drained too (they are records of other
        groups). Wakes on each settled batch; never polls. With ``fast_forward``
        the clock jumps to the next retry's due time whenever that is all the
        app has left. Raises :class:`UnexpectedDeadLetter` for the first dead
        letter not reported yet (with ``raise_on_dead_letter``), and
        :class:`DrainTimeout`, naming the groups still behind, after
        ``timeout`` seconds of real time (default: the TestApp's ``drain_timeout``).
        """
        broker = self.broker
        recorder = self._recorder
        loop = asyncio.get_running_loop()
        limit = self._drain_timeout if timeout is None else timeout
        deadline = loop.time() + limit
        while True:
            recorder.changed.clear()  # before looking: a settle from here on wakes the wait below
            self._raise_dead_letter()
            due = [at for spec in self._specs if (at := broker.ready_at(spec.topic, spec.group)) is not None]
            if not due:
                await recorder.open_sealed()  # handler outputs encrypted by the app's security, for published()
                return
            earliest, now = min(due), broker.clock.now()
            if earliest > now and self._clock is not None:
                # Nothing left but retries due later: move time to the first and let its fetch see it.
                self._clock.advance(earliest - now)
                broker.wake()
                continue
            try:
                await asyncio.wait_for(recorder.changed.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise await self._timeout(limit) from None

    def _raise_dead_letter(self) -> None:
        letters = self._recorder.dead_letters
        if self._raise_on_dead_letter and self._reported < len(letters):
            self._reported += 1
            raise UnexpectedDeadLetter(letters[self._reported - 1])

    async def _timeout(self, limit: float) -> DrainTimeout:
        broker = self.broker
        stats = self.app.stats()
        groups: list[str] = []
        details: list[str] = []
        for spec in self._specs:
            at = broker.ready_at(spec.topic, spec.group)
            if at is None:
                continue
            behind = sum(lag.lag for lag in await broker.lag(spec.group) if lag.topic == spec.topic)
            wait = at - broker.clock.now()
            state = f"next retry due in {wait:.3f}s" if wait > 0 else "records in flight or ready"
            crashes = stats[spec.group].crashes if spec.group in stats else 0
            crashed = f"; its consumer crashed {crashes} time(s), see the log" if crashes else ""
            groups.append(spec.group)
            details.append(f"{spec.group} on {spec.topic}: {behind} record(s) behind, {state}{crashed}")
        return DrainTimeout(limit, groups, details)

    # -- reading ---------------------------------------------------------------

    def published(self, event_type: type[E]) -> list[E]:
        """Return every ``event_type`` event the app published while running here, in commit order.

        Counts what :meth:`publish` and ``app.publish`` sent and what handlers
        emitted (once their batch settled); each is parsed into ``event_type``.
        With ``App(security=...)`` encrypting payloads, each is decrypted with
        the app's key store (handler outputs once :meth:`drain` returned); one
        whose data key is gone cannot be parsed (pydantic's ValidationError),
        as a consumer could not read it; :meth:`envelopes` lists it as sent.
        """
        name = event_type.event_type()
        opened = self._recorder.opened
        return [
            event_type.model_validate(opened.get(index, env).data)
            for index, (_, env) in enumerate(self._recorder.envelopes)
            if env.type == name
        ]

    def envelopes(self, topic: str | None = None) -> list[Envelope]:
        """Return the envelopes published on ``topic`` (every topic if None) while running here, in commit order.

        They are as sent: signed and encrypted when the app has ``security=`` (see :meth:`published`).
        """
        return [env for where, env in self._recorder.envelopes if topic is None or where == topic]

    @property
    def dead_letters(self) -> list[DeadLetter]:
        """Every dead letter the app wrote while running here, in the order they were written."""
        return list(self._recorder.dead_letters)
