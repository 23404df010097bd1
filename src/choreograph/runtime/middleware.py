"""Middleware: one shape, a function from handler to handler.

A :data:`Handler` takes the envelope and its :class:`Context` and records the
outcome on the context; a :data:`Middleware` wraps one. The runtime builds
each handler's pipeline once, at start::

    [app middleware ...] -> inbox_dedupe -> failure_policy -> timeout -> invoke

``failure_policy`` turns exceptions into outcomes (retry with a delay, or dead
letter), so app middleware sees every outcome on the context — success,
duplicate, retry, dead letter — without catching anything. Publishing has the
same shape: a :data:`PublisherMiddleware` wraps a :data:`Publisher`.

A middleware with per-handler options is an :class:`OptionsMiddleware`: it
lists the option types it ``owns`` and builds a plain middleware for each
handler from that handler's spec (reading its options once, at start), or
none for a handler that does not need it.
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from choreograph.core.enums import DeadLetterReason
from choreograph.core.envelope import Envelope
from choreograph.core.errors import DecodeError, Reject, Retry
from choreograph.runtime.context import Context, Outcome
from choreograph.runtime.options import HandlerOption
from choreograph.schema.errors import SchemaError

if TYPE_CHECKING:
    from choreograph.runtime.service import HandlerSpec

Handler = Callable[[Envelope, Context], Awaitable[None]]
Middleware = Callable[[Handler], Handler]

Publisher = Callable[[str, list[Envelope]], Awaitable[list[Envelope]]]
"""Sends envelopes to a topic and returns them as sent (a middleware may rewrite them)."""
PublisherMiddleware = Callable[[Publisher], Publisher]


@runtime_checkable
class OptionsMiddleware(Protocol):
    """A middleware that owns per-handler options (install with ``app.use``).

    ``owns`` lists the :class:`~choreograph.runtime.options.HandlerOption`
    types it acts on; the App refuses to start a handler that declares an
    option no installed middleware owns. :meth:`for_handler` is called once
    per handler when its consumer is built.
    """

    @property
    def owns(self) -> tuple[type[HandlerOption], ...]:
        """The option types this middleware acts on (a class attribute will do: ``owns = (RateLimit,)``)."""
        ...

    def for_handler(self, spec: HandlerSpec) -> Middleware | None:
        """Return the middleware for ``spec``'s pipeline, or None to stay out of it (no option declared)."""
        ...


def for_handler(middlewares: Sequence[Middleware | OptionsMiddleware], spec: HandlerSpec) -> list[Middleware]:
    """Return the plain middlewares of ``spec``'s pipeline: OptionsMiddleware resolved for it, in order."""
    resolved: list[Middleware] = []
    for middleware in middlewares:
        if isinstance(middleware, OptionsMiddleware):
            built = middleware.for_handler(spec)
            if built is not None:
                resolved.append(built)
        else:
            resolved.append(middleware)
    return resolved


def owned_options(middlewares: Sequence[Middleware | OptionsMiddleware]) -> tuple[type[HandlerOption], ...]:
    """Return every option type the OptionsMiddleware among ``middlewares`` own."""
    return tuple(kind for m in middlewares if isinstance(m, OptionsMiddleware) for kind in m.owns)


def inbox_dedupe(handler: Handler) -> Handler:
    """Skip events this handler's group already processed (same source + id).

    The batch's inbox lookup is done once per batch by the consumer and put in
    ``ctx.seen`` (one set for the batch); duplicates inside one batch are
    caught here too.
    """

    async def dedupe(envelope: Envelope, ctx: Context) -> None:
        seen = ctx.seen
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
                ctx.reason = DeadLetterReason.ERROR
            else:
                ctx.outcome = Outcome.RETRY
                ctx.retry_delay = delay
        if ctx.error is not None:
            ctx.outputs.clear()  # a failed attempt publishes nothing
            ctx.stack = "".join(traceback.format_exception(ctx.error))

    return classify


def _reason(exc: BaseException) -> str:
    if isinstance(exc, DecodeError):
        return DeadLetterReason.DECODE
    if isinstance(exc, SchemaError):
        return DeadLetterReason.SCHEMA
    return DeadLetterReason.REJECT


class _Attempt:
    __slots__ = ("cancelling", "deadline", "expired", "task")

    def __init__(self, task: asyncio.Task[object], deadline: float) -> None:
        self.task = task
        self.deadline = deadline
        self.cancelling = task.cancelling()
        self.expired = False


class _Watchdog:
    """Cancels attempts that run past their deadline, with one timer for all of them.

    ``asyncio.timeout`` arms and cancels a timer per attempt, about 4 us, more
    than the rest of the pipeline's bookkeeping. Attempts of one handler share
    its timeout, so they expire in the order they started: the timer waits for
    the oldest deadline, expires what is due and waits for the next one.
    """

    def __init__(self) -> None:
        self._running: set[_Attempt] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def enter(self, timeout: float) -> _Attempt:
        task = asyncio.current_task()
        assert task is not None, "handlers run in a task"
        loop = task.get_loop()
        attempt = _Attempt(task, loop.time() + timeout)
        self._running.add(attempt)
        if self._timer is None or attempt.deadline < self._timer_at:
            self._arm(loop, attempt.deadline)
        return attempt

    def leave(self, attempt: _Attempt) -> None:
        self._running.discard(attempt)

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(when, self._expire, loop)
        self._timer_at = when

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = loop.time()
        for attempt in [a for a in self._running if a.deadline <= now]:
            # the task is suspended inside the attempt (it is still registered): the cancel lands there
            self._running.discard(attempt)
            attempt.expired = True
            attempt.task.cancel()
        if self._running:
            self._arm(loop, min(a.deadline for a in self._running))


def with_timeout(handler: Handler) -> Handler:
    """Fail the attempt with TimeoutError when it runs past the handler's timeout.

    The handler is cancelled at its deadline; if it swallows the cancellation
    the attempt still counts as timed out. A cancellation from elsewhere (a
    shutdown) is passed on untouched.
    """
    watchdog = _Watchdog()

    async def timed(envelope: Envelope, ctx: Context) -> None:
        timeout = ctx.handler.timeout
        if timeout is None:
            await handler(envelope, ctx)
            return
        attempt = watchdog.enter(timeout)
        try:
            await handler(envelope, ctx)
        except asyncio.CancelledError:
            if not attempt.expired:
                raise
            attempt.expired = False
            if attempt.task.uncancel() > attempt.cancelling:
                raise  # cancelled from elsewhere as well (a shutdown): pass that on
            raise TimeoutError(f"the handler ran past its {timeout}s timeout") from None
        finally:
            watchdog.leave(attempt)
            if attempt.expired:  # the handler swallowed our cancellation, or turned it into another error
                attempt.task.uncancel()
        if attempt.expired:
            raise TimeoutError(f"the handler ran past its {timeout}s timeout")

    return timed


def chain(middlewares: list[Middleware], handler: Handler) -> Handler:
    """Wrap ``handler`` so the first middleware in the list runs outermost."""
    for middleware in reversed(middlewares):
        handler = middleware(handler)
    return handler
