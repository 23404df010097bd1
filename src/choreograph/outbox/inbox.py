"""Transactional handlers: the handler's effects, its inbox record and its outgoing events commit together.

Declare it per handler and install its middleware once::

    app.use(TransactionalHandlers(outbox))

    @payments.on(OrderPlaced, options=[Transactional(engine)])
    async def charge(event: OrderPlaced, ctx: Context) -> None:
        session = db_session(ctx)
        session.add(Charge(order_id=event.order_id, amount=event.total))
        ctx.publish(PaymentCaptured(order_id=event.order_id))

For each delivery, in one transaction of ``engine``'s database:

1. the inbox row (consumer group, event dedupe key) is inserted; if it is
   already there, the event was handled before: nothing runs, the delivery is
   a duplicate and is acknowledged;
2. the handler runs with the session (:func:`db_session`);
3. if it succeeded, its outgoing events are staged in the outbox (with the
   derived ids the consumer would have published) instead of being published;
4. the transaction commits; only then does the consumer settle (ack) the
   delivery. A failed attempt rolls everything back and retries or
   dead-letters as usual.

A process killed before the commit leaves nothing behind and the event is
delivered again; killed after it, the redelivery finds the inbox row and is
acknowledged as a duplicate. So the handler's effects on that database happen
exactly once per event on any broker, and its outputs are shipped by the
relay, at least once with fixed ids. On PostgreSQL a second worker handling
the same event at the same time waits on the first one's inbox row and then
sees a duplicate. On SQLite the inbox row takes the database's write lock for
the whole handling, so transactional handlers on one SQLite file run one at a
time.

Inbox keys are kept for ``RelayConfig.inbox_retention`` (14 days by default):
it must outlive the longest time an event can come back — the retry
horizon, plus how long dead letters wait before resubmission, plus any replay
window.
"""

from __future__ import annotations

import contextvars
import time
import traceback
from dataclasses import dataclass

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from choreograph.core.enums import DeadLetterReason
from choreograph.core.envelope import Envelope
from choreograph.core.errors import BrokerError, ConfigurationError, EncodeError
from choreograph.outbox.tables import inbox
from choreograph.outbox.writer import Outbox
from choreograph.runtime.context import Context, Outcome
from choreograph.runtime.middleware import Handler, Middleware
from choreograph.runtime.options import HandlerOption
from choreograph.runtime.service import HandlerSpec

_current: contextvars.ContextVar[tuple[Context, AsyncSession] | None] = contextvars.ContextVar(
    "choreograph_outbox_session", default=None
)


@dataclass(frozen=True, slots=True, eq=False)
class Transactional(HandlerOption):
    """Run this handler in a transaction of ``engine``'s database, with its inbox and outbox there.

    Needs ``app.use(TransactionalHandlers(...))``. The database must hold the
    outbox tables (``choreograph.outbox.install``).
    """

    engine: AsyncEngine
    install_hint = "app.use(TransactionalHandlers(outbox)) from choreograph.outbox"

    def __post_init__(self) -> None:
        if not isinstance(self.engine, AsyncEngine):
            raise ConfigurationError(
                f"Transactional takes an sqlalchemy AsyncEngine (create_async_engine(url)), got {self.engine!r}"
            )
        if self.engine.dialect.name not in ("postgresql", "sqlite"):
            raise ConfigurationError(
                f"Transactional handlers keep their inbox in PostgreSQL or SQLite, not {self.engine.dialect.name!r}"
            )


def db_session(ctx: Context) -> AsyncSession:
    """Return the session of the transaction ``ctx``'s handling runs in (a ``Transactional`` handler only).

    Write through it; do not commit or roll it back yourself: the middleware
    commits it with the inbox row and the outputs, or rolls it back if the
    attempt fails (raise to fail it).
    """
    current = _current.get()
    if current is None or current[0] is not ctx:
        raise ConfigurationError(
            f"handler {ctx.handler.group} has no database session: declare options=[Transactional(engine)] "
            "and install app.use(TransactionalHandlers(outbox))"
        )
    return current[1]


class TransactionalHandlers:
    """The middleware that owns :class:`Transactional` (an OptionsMiddleware).

    Handlers' outputs are staged through ``outbox``: sealed by its App's
    security (signed, encrypted, keyed ids) as the consumer would seal them,
    and a relay in this process is woken at commit (``outbox.on_commit(relay.wake)``).
    """

    owns = (Transactional,)

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

    def for_handler(self, spec: HandlerSpec) -> Middleware | None:
        option = spec.option(Transactional)
        if option is None:
            return None
        engine, group, outbox = option.engine, spec.group, self._outbox
        claim = postgresql.insert(inbox) if engine.dialect.name == "postgresql" else sqlite.insert(inbox)
        claim_row = claim.on_conflict_do_nothing().returning(inbox.c.handled_at)

        def middleware(handler: Handler) -> Handler:
            async def transactional(envelope: Envelope, ctx: Context) -> None:
                async with AsyncSession(engine, expire_on_commit=False) as session:
                    try:
                        claimed = await session.execute(
                            claim_row,
                            {"consumer_group": group, "dedupe_key": envelope.dedupe_key, "handled_at": time.time()},
                        )
                    except SQLAlchemyError as exc:
                        _retry(ctx, exc)
                        return
                    if claimed.first() is None:  # the row was there: handled (and committed) before
                        ctx.outcome = Outcome.DUPLICATE
                        return
                    token = _current.set((ctx, session))
                    try:
                        await handler(envelope, ctx)
                    finally:
                        _current.reset(token)
                    if ctx.outcome is not Outcome.SUCCESS:
                        return  # the session closes without commit: the attempt's effects roll back
                    try:
                        await outbox.stage(session, list(ctx.outputs), derived=True)  # sealed as the consumer would
                        await session.commit()
                    except EncodeError as exc:  # an output that can never be sent: as the consumer does, dead letter
                        ctx.outputs.clear()
                        ctx.error, ctx.reason, ctx.outcome = exc, DeadLetterReason.ERROR, Outcome.DEAD_LETTER
                        ctx.stack = "".join(traceback.format_exception(exc))
                        return
                    except (SQLAlchemyError, BrokerError) as exc:  # the database, or a key store, failed: retry
                        _retry(ctx, exc)
                        return
                    ctx.outputs.clear()  # staged in the outbox: the relay ships them, the consumer only acks

            return transactional

        return middleware


def _retry(ctx: Context, exc: BaseException) -> None:
    """The database failed (unreachable, serialization failure): retry per the handler's policy, or dead-letter."""
    ctx.outputs.clear()
    ctx.error = exc
    ctx.stack = "".join(traceback.format_exception(exc))
    delay = ctx.handler.retry.delay_for(ctx.attempt, None)
    if delay is None:
        ctx.outcome, ctx.reason = Outcome.DEAD_LETTER, DeadLetterReason.ERROR
    else:
        ctx.outcome, ctx.retry_delay = Outcome.RETRY, delay
