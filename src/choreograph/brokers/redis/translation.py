"""Translating redis-py errors into choreograph's, and reading Redis replies."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from redis import exceptions as redis_errors

from choreograph.core.errors import BrokerError, BrokerUnavailable

from .connection import refusal


@contextlib.asynccontextmanager
async def translated(what: str) -> AsyncIterator[None]:
    """Translate redis-py errors raised inside the block into choreograph BrokerErrors.

    Also re-raises a cancellation redis-py swallowed: its pool's connection
    check can turn a task's CancelledError into a reconnect, so the block
    finishes although the task was cancelled (``Task.cancelling()`` still says so).
    """
    task = asyncio.current_task()
    cancelling = task.cancelling() if task is not None else 0
    try:
        yield
    except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
        refused = refusal(exc)  # wrong credentials or a refused TLS handshake: retrying cannot help
        if refused is not None:
            raise refused from exc
        raise BrokerUnavailable(f"redis unreachable while trying to {what}: {exc}") from exc
    except redis_errors.RedisError as exc:
        refused = refusal(exc)  # NOAUTH: no password given
        if refused is not None:
            raise refused from exc
        raise BrokerError(f"redis failed to {what}: {exc}") from exc
    if task is not None and task.cancelling() > cancelling:
        raise asyncio.CancelledError(f"cancelled while trying to {what}")


def text(value: bytes | str) -> str:
    """A Redis reply as text (replies are bytes: the client does not decode them)."""
    return value.decode() if isinstance(value, bytes) else value
