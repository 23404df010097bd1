"""Middleware: one shape, a function from handler to handler.

A :data:`Handler` takes the envelope and its :class:`Context` and records the
outcome on the context; a :data:`Middleware` wraps one. The runtime builds
each handler's pipeline once, at start::

    [app middleware ...] -> inbox_dedupe -> failure_policy -> timeout -> invoke

``failure_policy`` turns exceptions into outcomes (retry with a delay, or dead
letter), so app middleware sees every outcome on the context — success,
duplicate, retry, dead letter — without catching anything. Publishing has the
same shape: a :data:`PublisherMiddleware` wraps a :data:`Publisher`.
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Awaitable, Callable

from choreograph.core.envelope import Envelope
from choreograph.core.errors import DecodeError, Reject, Retry
from choreograph.runtime.context import Context, Outcome
from choreograph.schema.errors import SchemaError

Handler = Callable[[Envelope, Context], Awaitable[None]]
Middleware = Callable[[Handler], Handler]

Publisher = Callable[[str, list[Envelope]], Awaitable[list[Envelope]]]
"""Sends envelopes to a topic and returns them as sent (a middleware may rewrite them)."""
PublisherMiddleware = Callable[[Publisher], Publisher]


def inbox_dedupe(handler: Handler) -> Handler:
    """Skip events this handler's group already processed (same source + id).

    The batch's inbox lookup is done once per batch by the consumer and put in
    ``ctx.extra["seen"]``; duplicates inside one batch are caught here too.
    """

    async def dedupe(envelope: Envelope, ctx: Context) -> None:
        seen: set[str] = ctx.extra["seen"]
        key = envelope.dedupe_key
        if key in seen:
            ctx.outcome = Outcome.DUPLICATE
            return
        await handler(envelope, ctx)
        if ctx.outcome is Outcome.SUCCESS:
            seen.add(key)

    return dedupe


def failure_policy(handler: Handler) -> Handler:
    """Map a failed attempt to a retry (per the handler's RetryPolicy) or a dead letter.

    Non-retryable failures — DecodeError, SchemaError (the data does not match
    the event's schema, no upcaster, an incompatible version), Reject — go
    straight to the dead letter. Cancellation is not a failure and propagates.
    """

    async def classify(envelope: Envelope, ctx: Context) -> None:
        try:
            await handler(envelope, ctx)
        except (DecodeError, SchemaError, Reject) as exc:
            ctx.error = exc
            ctx.outcome = Outcome.DEAD_LETTER
            ctx.reason = _reason(exc)
        except Exception as exc:
            ctx.error = exc
            requested = exc.after if isinstance(exc, Retry) else None
            delay = ctx.handler.retry.delay_for(ctx.attempt, requested)
            if delay is None:
                ctx.outcome = Outcome.DEAD_LETTER
                ctx.reason = "error"
            else:
                ctx.outcome = Outcome.RETRY
                ctx.retry_delay = delay
        if ctx.error is not None:
            ctx.outputs.clear()  # a failed attempt publishes nothing
            ctx.extra["stack"] = "".join(traceback.format_exception(ctx.error))

    return classify


def _reason(exc: BaseException) -> str:
    if isinstance(exc, DecodeError):
        return "decode"
    if isinstance(exc, SchemaError):
        return "schema"
    return "reject"


def with_timeout(handler: Handler) -> Handler:
    """Fail the attempt with TimeoutError when it runs past the handler's timeout."""

    async def timed(envelope: Envelope, ctx: Context) -> None:
        timeout = ctx.handler.timeout
        if timeout is None:
            await handler(envelope, ctx)
            return
        async with asyncio.timeout(timeout):
            await handler(envelope, ctx)

    return timed


def chain(middlewares: list[Middleware], handler: Handler) -> Handler:
    """Wrap ``handler`` so the first middleware in the list runs outermost."""
    for middleware in reversed(middlewares):
        handler = middleware(handler)
    return handler
