"""Producer backpressure: a deadline on every publish, and an optional throttle on lagging consumers.

:class:`PublishPolicy` (``App(publishing=...)``) bounds how long ``App.publish``,
``publish_envelope`` and ``publish_many`` wait, on every backend alike. The
deadline covers the whole call: the first use of an event class (its schema
check against the registry, which may live in the broker), the publisher
middleware and the broker's write. When it passes, the call raises
:class:`PublishTimeout` naming the topic and the broker (its URL with credentials
redacted). Whether the records were written is then unknown — the broker may
have taken them just before the deadline — which is safe with the runtime's
at-least-once delivery and the consumers' inbox (a retry is deduplicated by
event id). A broker that refuses at once (connection refused, not connected)
raises :class:`PublishFailed` at once, naming the broker too.

The throttle (``max_lag``) holds a publish back while a consumer group of the
topic is more than ``max_lag`` records behind, re-reading the lag every
``lag_poll`` seconds, until the groups catch up or the deadline passes (then
:class:`PublishTimeout`, saying which group lags). It needs a broker that reports
lag (every bundled backend does); otherwise it is off. One lag reading is shared
by the publishes of the next ``lag_poll`` seconds (plus what this process
published since), so a busy producer costs the broker one lag query per
``lag_poll``, not one per event. The bound is approximate with several
producers: each sees the others' records at its next reading.

Handler outputs are not published through this path: they are written with the
settlement of the batch that emitted them (atomically with the commit where the
backend can), so a slow broker holds the consumer's settle, not a caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass

from choreograph.core.broker import Broker, LagReporter, Record
from choreograph.core.errors import BrokerUnavailable, ConfigurationError
from choreograph.core.redaction import redact_text, redact_url

DEFAULT_DEADLINE = 30.0
"""Seconds a publish waits by default: longer than any backend's own reconnect, short enough to notice."""

_WAITING: ContextVar[list[str] | None] = ContextVar("choreograph_publish_waiting", default=None)


@dataclass(frozen=True, slots=True)
class PublishPolicy:
    """How long a publish may wait, and whether it waits for lagging consumers.

    ``deadline``: seconds a publish call may take in all (None: as long as the
    broker client does). ``max_lag``: records a consumer group of the topic may
    be behind before publishes to it wait (None: no throttle). ``lag_poll``:
    seconds between lag readings while throttled, and how long one reading is
    reused.
    """

    deadline: float | None = DEFAULT_DEADLINE
    max_lag: int | None = None
    lag_poll: float = 0.5

    def __post_init__(self) -> None:
        if self.deadline is not None and not (math.isfinite(self.deadline) and self.deadline > 0):
            raise ConfigurationError(f"publish deadline must be a positive number of seconds, not {self.deadline!r}")
        if self.max_lag is not None and self.max_lag < 0:
            raise ConfigurationError(f"max_lag must be 0 or more records, not {self.max_lag!r}")
        if not (math.isfinite(self.lag_poll) and self.lag_poll > 0):
            raise ConfigurationError(f"lag_poll must be a positive number of seconds, not {self.lag_poll!r}")


class PublishFailed(BrokerUnavailable):
    """A publish could not reach the broker; the message names the topic and the broker (redacted)."""

    def __init__(self, message: str, *, topic: str, broker: str) -> None:
        super().__init__(message)
        self.topic = topic
        self.broker = broker


class PublishTimeout(PublishFailed, TimeoutError):
    """A publish did not complete within its deadline; its records may or may not have been written."""

    def __init__(self, message: str, *, topic: str, broker: str, deadline: float) -> None:
        super().__init__(message, topic=topic, broker=broker)
        self.deadline = deadline


class Publishing:
    """Applies a :class:`PublishPolicy` to the publishes of one App (one event loop).

    ``broker_name`` returns the broker's URL (redacted here before any display).
    """

    def __init__(self, policy: PublishPolicy, broker_name: Callable[[], str]) -> None:
        self.policy = policy
        self._broker_name = broker_name
        self._lag_read_at = -math.inf
        self._lag_rows: dict[str, tuple[str, int]] = {}

    def _broker(self) -> str:
        return redact_url(self._broker_name())

    @contextlib.asynccontextmanager
    async def bound(self, topic: str) -> AsyncIterator[None]:
        """Run the body within the deadline; turn an expiry or an unreachable broker into PublishFailed."""
        started = time.monotonic()
        deadline = self.policy.deadline
        waiting: list[str] = []  # what the throttle waits for, for the timeout's message (this call's own)
        token = _WAITING.set(waiting)
        try:
            async with asyncio.timeout(deadline) as scope:
                yield
        except PublishFailed:  # a nested publish's own verdict (a PublishTimeout is a TimeoutError too)
            raise
        except TimeoutError as exc:
            if not scope.expired():
                raise self._failed(topic, started, exc) from exc  # the client's own timeout, before ours
            assert deadline is not None  # an expiry needs a deadline
            broker = self._broker()
            cause = waiting[-1] if waiting else "the broker did not answer (unreachable or overloaded)"
            raise PublishTimeout(
                f"publish to {topic!r} on {broker} did not complete within its {deadline:g} s deadline: {cause}; "
                "its records may or may not have been written",
                topic=topic,
                broker=broker,
                deadline=deadline,
            ) from exc
        except (BrokerUnavailable, OSError) as exc:
            raise self._failed(topic, started, exc) from exc
        finally:
            _WAITING.reset(token)

    def _failed(self, topic: str, started: float, exc: BaseException) -> PublishFailed:
        broker = self._broker()
        detail = redact_text(f"{type(exc).__name__}: {exc}", self._broker_name())
        return PublishFailed(
            f"publish to {topic!r} on {broker} failed after {time.monotonic() - started:.2f} s: {detail}",
            topic=topic,
            broker=broker,
        )

    async def send(self, broker: Broker, topic: str, records: Sequence[Record]) -> None:
        """Wait for lagging consumers (if throttled), then write ``records`` to ``topic``."""
        bound = self.policy.max_lag
        throttled = bound is not None and isinstance(broker, LagReporter)
        if bound is not None and isinstance(broker, LagReporter):
            await self._throttle(broker, topic, bound)
        await broker.publish(topic, records)
        if throttled and topic in self._lag_rows:  # until the next reading, count what this process added
            group, lag = self._lag_rows[topic]
            self._lag_rows[topic] = (group, lag + len(records))

    async def _throttle(self, broker: LagReporter, topic: str, bound: int) -> None:
        waiting = _WAITING.get()
        if waiting is None:  # called outside bound(): nobody reads the cause
            waiting = []
        while True:
            group, lag = await self._worst_lag(broker, topic)
            if lag <= bound:
                waiting.clear()
                return
            waiting[:] = [f"consumer group {group!r} lags {lag} records on {topic!r}, beyond max_lag={bound}"]
            await asyncio.sleep(self.policy.lag_poll)

    async def _worst_lag(self, broker: LagReporter, topic: str) -> tuple[str, int]:
        """The most-behind group of ``topic`` and its lag (summed over partitions), read at most once per lag_poll."""
        now = time.monotonic()
        if now - self._lag_read_at >= self.policy.lag_poll:
            totals: dict[tuple[str, str], int] = {}
            for row in await broker.lag():
                totals[(row.topic, row.group)] = totals.get((row.topic, row.group), 0) + row.lag
            worst: dict[str, tuple[str, int]] = {}
            for (row_topic, group), lag in totals.items():
                if lag > worst.get(row_topic, ("", -1))[1]:
                    worst[row_topic] = (group, lag)
            self._lag_rows = worst
            self._lag_read_at = time.monotonic()
        return self._lag_rows.get(topic, ("", 0))
