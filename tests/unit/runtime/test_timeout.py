"""The handler timeout: one watchdog timer per handler, exact asyncio.timeout semantics."""

from __future__ import annotations

import asyncio
import contextlib
from types import SimpleNamespace
from typing import Any

import pytest

from choreograph.runtime.middleware import with_timeout


def _ctx(timeout: float | None) -> Any:
    return SimpleNamespace(handler=SimpleNamespace(timeout=timeout))


async def test_only_the_attempt_past_its_deadline_fails() -> None:
    # Given a slow attempt and quick ones running concurrently under one handler
    finished: list[str] = []

    async def handler(envelope: Any, ctx: Any) -> None:
        await asyncio.sleep(ctx.pause)
        finished.append(envelope)

    timed = with_timeout(handler)

    async def attempt(name: str, pause: float) -> str:
        ctx = _ctx(0.2)
        ctx.pause = pause
        try:
            await timed(name, ctx)
        except TimeoutError:
            return f"{name} timed out"
        return f"{name} ok"

    # When they run
    results = await asyncio.gather(attempt("slow", 10), *(attempt(f"q{i}", 0.01 * i) for i in range(5)))
    # Then the slow one fails with TimeoutError and every quick one finishes
    assert results == ["slow timed out", *(f"q{i} ok" for i in range(5))]
    assert sorted(finished) == [f"q{i}" for i in range(5)]


async def test_later_attempts_keep_their_own_deadline() -> None:
    # Given attempts that start one after another, each quicker than the timeout
    timed = with_timeout(lambda envelope, ctx: asyncio.sleep(0.03))
    # When their run together lasts much longer than one timeout, nothing expires
    for _ in range(8):
        await timed(None, _ctx(0.1))
    # And an attempt that hangs after them still expires
    hang = with_timeout(lambda envelope, ctx: asyncio.Event().wait())
    with pytest.raises(TimeoutError):
        await hang(None, _ctx(0.05))


async def test_a_handler_that_swallows_the_cancellation_still_times_out() -> None:
    async def stubborn(envelope: Any, ctx: Any) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()

    with pytest.raises(TimeoutError):
        await with_timeout(stubborn)(None, _ctx(0.05))
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0  # our cancellation is not left pending


async def test_a_cancellation_from_outside_is_passed_on() -> None:
    started = asyncio.Event()

    async def handler(envelope: Any, ctx: Any) -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(with_timeout(handler)(None, _ctx(30)))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
