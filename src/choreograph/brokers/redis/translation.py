"""Translating redis-py errors into choreograph's, and reading Redis replies."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Final

from redis import exceptions as redis_errors

from choreograph.core.error_table import ErrorRule, ErrorTable, catches, translate
from choreograph.core.errors import BrokerError, BrokerUnavailable

from .connection import refusal

ERRORS: Final[ErrorTable] = (
    # wrong credentials or a refused TLS handshake: retrying cannot help (refusal says which option to fix)
    ErrorRule(
        (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError),
        BrokerUnavailable,
        "redis unreachable while trying to {what}: {exc}",
        refine=refusal,
    ),
    ErrorRule(redis_errors.RedisError, BrokerError, "redis failed to {what}: {exc}", refine=refusal),  # NOAUTH
)
"""redis-py exception -> choreograph error, first match wins (see :mod:`choreograph.core.error_table`)."""

_CAUGHT: Final = catches(ERRORS)


@contextlib.asynccontextmanager
async def translated(what: str) -> AsyncIterator[None]:
    """Translate redis-py errors raised inside the block into choreograph BrokerErrors (per :data:`ERRORS`).

    Also re-raises a cancellation redis-py swallowed: its pool's connection
    check can turn a task's CancelledError into a reconnect, so the block
    finishes although the task was cancelled (``Task.cancelling()`` still says so).
    """
    task = asyncio.current_task()
    cancelling = task.cancelling() if task is not None else 0
    try:
        yield
    except _CAUGHT as exc:
        error = translate(exc, ERRORS, what)
        assert error is not None  # _CAUGHT is exactly what ERRORS names
        raise error from exc
    if task is not None and task.cancelling() > cancelling:
        raise asyncio.CancelledError(f"cancelled while trying to {what}")


def text(value: bytes | str) -> str:
    """A Redis reply as text (replies are bytes: the client does not decode them)."""
    return value.decode() if isinstance(value, bytes) else value
