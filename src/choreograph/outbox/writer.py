"""Stage events in the outbox table, in the caller's database transaction.

The producer half of the transactional outbox: instead of publishing to the
broker, a unit of work writes its events into ``choreograph_outbox`` with the
same session (and so the same transaction) as its business rows. Either both
commit or neither does; a relay ships the committed events afterwards.

Each event gets its final id and its encoded envelope when it is staged, so
what the relay sends — once, or again after a crash — is byte for byte the
same event, and downstream inboxes drop the repeats.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from choreograph.core import codec
from choreograph.core.envelope import Envelope
from choreograph.core.errors import ConfigurationError
from choreograph.core.event import Event
from choreograph.outbox.tables import lane_of, outbox
from choreograph.runtime.app import App


def outbox_rows(staged: Sequence[tuple[str, Envelope]], *, now: float | None = None) -> list[dict[str, Any]]:
    """Return the ``choreograph_outbox`` rows for (topic, envelope) pairs, in order (encodes each envelope once).

    Raises EncodeError for an envelope over the size limit or with data that is not JSON.
    """
    at = time.time() if now is None else now
    return [
        {
            "event_id": envelope.id,
            "topic": topic,
            "partition_key": envelope.partitionkey,
            "lane": lane_of(envelope.partitionkey, envelope.id),
            "payload": codec.encode(envelope),
            "created_at": at,
        }
        for topic, envelope in staged
    ]


class Outbox:
    """Stages an App's events in its database's outbox instead of publishing them.

    Envelopes are built as :meth:`App.publish` builds them: checked against
    the App's schema registry (each class once), source = the App's name (or
    ``source=``), a fresh id that starts a new correlation, ``key`` the
    partition key. Staged rows commit or roll back with the session's
    transaction; nothing reaches the broker until a relay ships them, in
    staging order per key, at least once.

    Safe to share between tasks and threads (it keeps no per-call state).
    """

    def __init__(self, app: App, *, source: str | None = None) -> None:
        self._app = app
        self._source = source or app.name
        self._admitted: set[type[Event]] = set()
        self._wake: list[Callable[[], None]] = []

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after each commit of a session that staged events here (an in-process relay's wake-up).

        Relays in other processes are woken by PostgreSQL NOTIFY, or find the
        rows on their next poll. ``callback`` runs in the committing thread.
        """
        self._wake.append(callback)

    def envelope(self, event: Event, *, key: str | None = None, subject: str | None = None) -> Envelope:
        """Build ``event``'s envelope as a fresh publish would. Blocks on the registry the first time per class."""
        guard = self._app.schema_guard
        if type(event) not in self._admitted:
            guard.admit(type(event))
            self._admitted.add(type(event))
        return Envelope.for_event(event, source=self._source, key=key, subject=subject, data=guard.outgoing(event))

    async def publish(
        self, session: AsyncSession, event: Event, *, key: str | None = None, subject: str | None = None
    ) -> Envelope:
        """Stage ``event`` in ``session``'s transaction; return its envelope as it will be sent (final id).

        Does not commit: the event is shipped once the caller's transaction
        commits, and never if it rolls back. With ``App(security=...)`` the
        envelope is sealed (encrypted, signed) here, as ``App.publish`` would.
        """
        if type(event) not in self._admitted:
            await asyncio.to_thread(self._app.schema_guard.admit, type(event))
            self._admitted.add(type(event))
        envelope = self.envelope(event, key=key, subject=subject)
        return (await self.stage(session, [(event.topic(), envelope)]))[0]

    def publish_sync(
        self, session: Session, event: Event, *, key: str | None = None, subject: str | None = None
    ) -> Envelope:
        """Stage ``event`` in a synchronous ``session``'s transaction; return its envelope. Does not commit.

        Raises ConfigurationError when the App signs or encrypts events (sealing is async: use an AsyncSession).
        """
        envelope = self.envelope(event, key=key, subject=subject)
        self.stage_sync(session, [(event.topic(), envelope)])
        return envelope

    async def stage(
        self, session: AsyncSession, staged: Sequence[tuple[str, Envelope]], *, derived: bool = False
    ) -> list[Envelope]:
        """Insert ready envelopes (ids and causality kept) into the outbox in ``session``'s transaction.

        Returns them as they will be sent: sealed by the App's security if it
        has one (``derived``: handler outputs, whose ids are keyed when
        signing is on — see ``Security.seal``).
        """
        envelopes = [envelope for _, envelope in staged]
        security = self._app.security
        if security is not None and envelopes:
            envelopes = await security.seal(envelopes, derived=derived)
        if envelopes:
            rows = outbox_rows([(topic, envelope) for (topic, _), envelope in zip(staged, envelopes, strict=True)])
            await session.execute(insert(outbox), rows)
            self._wake_after_commit(session.sync_session)
        return envelopes

    def stage_sync(self, session: Session, staged: Sequence[tuple[str, Envelope]]) -> None:
        """Insert ready envelopes into the outbox in a synchronous ``session``'s transaction."""
        if self._app.security is not None:
            raise ConfigurationError(
                "this App signs or encrypts its events, which the outbox does asynchronously: "
                "stage them with an AsyncSession (Outbox.publish)"
            )
        if staged:
            session.execute(insert(outbox), outbox_rows(staged))
            self._wake_after_commit(session)

    def _wake_after_commit(self, session: Session) -> None:
        # One listener per session, kept for its later transactions: a commit without staged rows wakes the
        # relay for nothing, which costs it one empty poll.
        if self._wake and not sa_event.contains(session, "after_commit", self._woken):
            sa_event.listen(session, "after_commit", self._woken)

    def _woken(self, _session: Session) -> None:
        for callback in self._wake:
            callback()
