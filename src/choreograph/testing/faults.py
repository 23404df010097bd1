"""Fault injection usable from any test.

- :class:`FailurePlan` — make a handler fail on chosen attempts (of chosen messages);
- :func:`failing_settle` — make ``settle`` raise on chosen calls, applying nothing;
- :class:`ChildProcess` — run a consumer (or publisher) in a child Python process
  that opens the same broker, and ``kill -9`` it at a chosen point: after N
  deliveries, mid-batch, or between handling and ack; or stall it (SIGSTOP)
  past its lease and let it continue (SIGCONT); or hold a batch and settle it
  when told (after a stall: a settle under a lost lease);
- restarting a broker process is a hook of the backend's conformance subclass
  (:meth:`choreograph.testing.conformance.BrokerConformance.reopen_broker`).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Final

from choreograph.core.broker import Delivery, Settlement, Subscription
from choreograph.core.errors import BrokerError
from choreograph.testing.history import History, HistoryEvent, RecordingSubscription, message_id

AFTER_DELIVERIES: Final = "after_deliveries"
"""Kill point: right after the N-th delivery was handled; the rest of its batch is untouched."""
MID_BATCH: Final = "mid_batch"
"""Kill point: after handling half of the batch in which the N-th delivery arrived."""
BEFORE_ACK: Final = "before_ack"
"""Kill point: after handling the whole batch, before settling it."""
KILL_POINTS: Final = (AFTER_DELIVERIES, MID_BATCH, BEFORE_ACK)

READY: Final = "ready"
SETTLED: Final = "settled"


class InjectedFailure(Exception):
    """Raised by :meth:`FailurePlan.check`: a failure a test asked for."""


@dataclass(frozen=True, slots=True)
class FailurePlan:
    """Fail chosen attempts of chosen messages (``messages=None``: every message)."""

    attempts: frozenset[int] = frozenset({1})
    messages: frozenset[str] | None = None
    delay: float = 0.0
    """Retry delay, in seconds, the harness consumer asks for after a failure."""

    def fails(self, message: str, attempt: int) -> bool:
        """Return whether attempt ``attempt`` of ``message`` must fail."""
        return attempt in self.attempts and (self.messages is None or message in self.messages)

    def check(self, message: str, attempt: int) -> None:
        """Raise :class:`InjectedFailure` if this attempt must fail (call it from any handler)."""
        if self.fails(message, attempt):
            raise InjectedFailure(f"injected failure of {message!r} on attempt {attempt}")

    def decide(self, delivery: Delivery) -> float | None:
        """A :data:`~choreograph.testing.consumer.Decide` function for the harness consumer."""
        if self.fails(message_id(delivery.headers, delivery.value), delivery.attempt):
            return self.delay
        return None


class _FailingSettle:
    """A subscription whose ``settle`` raises BrokerError on chosen calls without applying anything."""

    def __init__(self, inner: Subscription, calls: Collection[int]) -> None:
        self._inner = inner
        self._calls = set(calls)
        self._count = 0

    async def fetch(self, max_records: int, timeout: float) -> Sequence[Delivery]:
        return await self._inner.fetch(max_records, timeout)

    async def settle(self, settlement: Settlement) -> None:
        self._count += 1
        if self._count in self._calls:
            raise BrokerError(f"injected failure of settle call {self._count}")
        await self._inner.settle(settlement)

    async def seen(self, keys: Sequence[str]) -> set[str]:
        return await self._inner.seen(keys)

    async def close(self) -> None:
        await self._inner.close()


def failing_settle(sub: RecordingSubscription, calls: Collection[int] = (1,)) -> RecordingSubscription:
    """Return ``sub`` with settle calls number ``calls`` (1-based) failing before reaching the broker."""
    return RecordingSubscription(_FailingSettle(sub.inner, calls), sub.history, sub.group, sub.member)


@dataclass(frozen=True, slots=True)
class ChildBroker:
    """How a child process opens the same broker: ``url``, and the ``opener`` called with it.

    ``opener`` is ``"module:callable"`` (dots allowed after the colon, e.g.
    ``"pkg.mod:Broker.from_url"``); it may return the broker or an awaitable
    of it. The default opens every URL scheme choreograph knows.
    """

    url: str
    opener: str = "choreograph.brokers:open_broker"


class ChildProcess:
    """A child Python process running a harness consumer or publisher, reporting events on stdout."""

    def __init__(self, proc: asyncio.subprocess.Process, history: History) -> None:
        self.proc = proc
        self.history = history
        self.ready = False
        self.settled: dict[str, Any] | None = None
        """What a holder reported of its settle (see :meth:`settle_held`)."""

    @classmethod
    async def consumer(
        cls,
        broker: ChildBroker,
        history: History,
        *,
        topic: str,
        group: str,
        after: int,
        point: str = MID_BATCH,
        batch: int = 10,
    ) -> ChildProcess:
        """Start a consumer of ``group`` that stops dead at ``point`` once ``after`` deliveries arrived."""
        if point not in KILL_POINTS:
            raise ValueError(f"unknown kill point {point!r}; choose one of {KILL_POINTS}")
        spec = {"mode": "consume", "topic": topic, "group": group, "after": after, "point": point, "batch": batch}
        return await cls._start(broker, history, spec)

    @classmethod
    async def holder(
        cls, broker: ChildBroker, history: History, *, topic: str, group: str, outputs: str, batch: int = 10
    ) -> ChildProcess:
        """Start a member of ``group`` that fetches one batch and holds it until :meth:`settle_held`.

        Its settle acks the batch and publishes one record per delivery to ``outputs``.
        """
        spec = {"mode": "hold", "topic": topic, "group": group, "batch": batch, "outputs": outputs}
        return await cls._start(broker, history, spec)

    async def settle_held(self, timeout: float = 20.0) -> dict[str, Any]:
        """Tell a holder to settle its batch; return ``{"settled": "applied" | "refused", "error": ...}``."""
        if self.proc.stdin is None:
            raise RuntimeError("the child's stdin is not piped")
        self.proc.stdin.write(b"settle\n")
        await self.proc.stdin.drain()
        async with asyncio.timeout(timeout):
            while self.settled is None:
                if not await self._read_line():
                    raise RuntimeError(f"child exited before settling:\n{await self._stderr()}")
        return self.settled

    @classmethod
    async def publisher(
        cls, broker: ChildBroker, history: History, *, topic: str, after: int, prefix: str, keys: int = 4
    ) -> ChildProcess:
        """Start a publisher that publishes one record per call forever, ready after ``after`` acks."""
        spec = {"mode": "publish", "topic": topic, "after": after, "prefix": prefix, "keys": keys}
        return await cls._start(broker, history, spec)

    @classmethod
    async def _start(cls, broker: ChildBroker, history: History, spec: dict[str, Any]) -> ChildProcess:
        spec = {**spec, "opener": broker.opener, "url": broker.url}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "choreograph.testing.child",
            json.dumps(spec),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc, history)

    async def wait_ready(self, timeout: float = 20.0) -> None:
        """Read the child's events into the history until it reports it reached its point."""
        async with asyncio.timeout(timeout):
            while not self.ready:
                if not await self._read_line():
                    raise RuntimeError(f"child exited before its kill point:\n{await self._stderr()}")

    async def follow(self, condition: Callable[[], bool], timeout: float = 20.0) -> None:
        """Read the child's events into the history until ``condition()`` holds; raise if it exits first."""
        async with asyncio.timeout(timeout):
            while not condition():
                if not await self._read_line():
                    raise RuntimeError(f"child exited early:\n{await self._stderr()}")

    async def exited(self, timeout: float = 20.0) -> int:
        """Read the child's events until it exits by itself (within ``timeout`` s); return its exit status."""
        async with asyncio.timeout(timeout):
            while await self._read_line():
                pass
            return await self.proc.wait()

    async def kill(self) -> int:
        """``kill -9`` the child, keep every event it wrote before dying, and return its exit status."""
        if self.proc.returncode is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        while await self._read_line():
            pass
        return await self.proc.wait()

    def stall(self) -> None:
        """Freeze the child (SIGSTOP), as a long GC pause or a hung host would."""
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Let a stalled child continue (SIGCONT)."""
        os.kill(self.proc.pid, signal.SIGCONT)

    async def _read_line(self) -> bool:
        if self.proc.stdout is None:
            raise RuntimeError("the child's stdout is not piped")
        line = await self.proc.stdout.readline()
        if not line:
            return False
        text = line.decode().strip()
        if not text.endswith("}"):
            return True  # cut short by the kill: never a complete event
        doc = json.loads(text)
        if doc.get(READY):
            self.ready = True
        elif SETTLED in doc:
            self.settled = doc
        else:
            self.history.merge([HistoryEvent.from_json(text)])
        return True

    async def _stderr(self) -> str:
        if self.proc.stderr is None:
            return ""
        await self.proc.wait()
        return (await self.proc.stderr.read()).decode(errors="replace")
