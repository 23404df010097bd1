"""Sequenced parking: an opt-in per handler that keeps a key's events in order across retries and dead letters.

Without it, a handler that fails on event 1 of key K retries it later (or
dead-letters it) and meanwhile handles event 2 of K: fine for independent
events, wrong when the order of one key's events matters (a debit before the
credit it needs). With :class:`Sequenced` declared on a handler and
:class:`SequencedParking` installed::

    app.use(SequencedParking(app.broker))

    @svc.on(AccountCredited, options=[Sequenced()])
    async def apply(event, ctx): ...

then, per consumer group and partition key:

* when an event of K fails (scheduled for a retry, or dead-lettered), K is
  **blocked** behind that event (the *blocker*);
* while K is blocked, every later event of K is **parked**: dead-lettered at
  once with reason ``parked`` (error type ``Parked``, naming the blocker), not
  handled. Parked entries are ordinary dead letters: ``choreograph dlq``
  lists and groups them (their own failure group);
* when the blocker is handled — its delayed retry succeeds, or an operator
  retries its dead letter (``choreograph dlq retry``) and it succeeds — the
  parked event of K with the lowest offset is resubmitted and becomes the
  blocker; when it succeeds, the next follows, and so on until none is left
  and K is unblocked. Each release is one resubmission, so a long queue drains
  at the pace of the backend's retry delivery.

Events without a partition key are never parked. The block markers live in the
broker's key-value namespace ``parking``; so the capability needs a backend that
keeps dead letters and key-value namespaces (:func:`supports_parking`): every
built-in backend (memory, SQLite, Redis, NATS, Kafka).

Limits, stated plainly: a release reads the group's open dead letters to find
the next parked entry (linear in the group's dead letters). The next entry is
resubmitted before the blocker's acknowledgement is committed, so a crash in
between can hand the blocker out again after its successor (at-least-once, as
any redelivery). A blocker whose dead letter is purged or deleted leaves K
blocked until :meth:`SequencedParking.unblock` (the parked entries can then be
retried as usual).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar
from urllib.parse import quote

import orjson

from choreograph.core.broker import DeadLetterStore
from choreograph.core.enums import DeadLetterReason, DeadLetterStatus
from choreograph.core.envelope import Envelope
from choreograph.core.errors import ChoreographError, ConfigurationError
from choreograph.core.kv import MAX_KEY_LENGTH, KeyConflict, KeyValueProvider, KeyValueStore
from choreograph.runtime.context import Context, Outcome
from choreograph.runtime.middleware import Handler, Middleware
from choreograph.runtime.options import HandlerOption

if TYPE_CHECKING:
    from choreograph.runtime.service import HandlerSpec

NAMESPACE = "parking"
PARKED_REASON = DeadLetterReason.PARKED
_ALL = 10_000_000


@dataclass(frozen=True, slots=True)
class Sequenced(HandlerOption):
    """Keep each partition key's events in order across retries and dead letters (see the module)."""

    install_hint: ClassVar[str] = "app.use(SequencedParking(app.broker))"


class Parked(ChoreographError):
    """Why a parked event was dead-lettered: an earlier event of its key is waiting (retry or dead letter)."""


def supports_parking(broker: object) -> bool:
    """True if ``broker`` can park: it keeps dead letters and key-value namespaces."""
    return isinstance(broker, DeadLetterStore) and isinstance(broker, KeyValueProvider)


def _marker_key(group: str, key: str) -> str:
    name = f"{quote(group, safe='-._~')}/{quote(key, safe='-._~')}"
    if len(name) <= MAX_KEY_LENGTH:
        return name
    return "#" + hashlib.sha256(f"{group}\x00{key}".encode("utf-8", "surrogatepass")).hexdigest()


class SequencedParking:
    """The middleware that owns :class:`Sequenced`: blocks, parks and releases keys (see the module)."""

    owns: ClassVar[tuple[type[HandlerOption], ...]] = (Sequenced,)

    def __init__(self, broker: object) -> None:
        if not (isinstance(broker, DeadLetterStore) and isinstance(broker, KeyValueProvider)):
            raise ConfigurationError(
                f"this broker ({type(broker).__name__}) cannot park events: sequenced parking needs dead letters "
                "and a key-value store"
            )
        self.letters: DeadLetterStore = broker
        self.markers: KeyValueStore = broker.key_value(NAMESPACE)

    def for_handler(self, spec: HandlerSpec) -> Middleware | None:
        """The parking middleware for a handler that declares :class:`Sequenced`; None for the others."""
        if spec.option(Sequenced) is None:
            return None
        return self._middleware

    async def blocker(self, group: str, key: str) -> str | None:
        """The id of the event key ``key`` of ``group`` is blocked behind, or None if it is not blocked."""
        entry = await self.markers.get(_marker_key(group, key))
        return str(orjson.loads(entry.value)["blocker"]) if entry else None

    async def unblock(self, group: str, key: str) -> bool:
        """Forget the block on ``key`` (when its blocker was purged); parked entries stay dead letters."""
        return await self.markers.delete(_marker_key(group, key))

    def _middleware(self, handler: Handler) -> Handler:
        async def sequenced(envelope: Envelope, ctx: Context) -> None:
            key = envelope.partitionkey
            if key is None:
                await handler(envelope, ctx)
                return
            group = ctx.handler.group
            marker = _marker_key(group, key)
            entry = await self.markers.get(marker)
            blocker = str(orjson.loads(entry.value)["blocker"]) if entry else None
            if blocker is not None and blocker != envelope.id:
                ctx.error = Parked(f"parked behind event {blocker} of key {key!r} (sequenced handler {group})")
                ctx.outcome = Outcome.DEAD_LETTER
                ctx.reason = PARKED_REASON
                return
            await handler(envelope, ctx)
            if ctx.outcome in (Outcome.RETRY, Outcome.DEAD_LETTER):
                if blocker is None:
                    await self._put(marker, envelope.id, expect=0)
            elif blocker is not None:  # the blocker went through: release the next parked event, if any
                await self._release(group, key, marker, entry.revision if entry else 0)

        return sequenced

    async def _put(self, marker: str, blocker: str, *, expect: int) -> None:
        try:
            await self.markers.put(marker, orjson.dumps({"blocker": blocker}), expect=expect)
        except KeyConflict:
            # Another member moved the marker meanwhile (a rebalance): its view is newer; keep it.
            return

    async def _release(self, group: str, key: str, marker: str, revision: int) -> None:
        parked = [
            d
            for d in await self.letters.dead_letters(group=group, status=DeadLetterStatus.OPEN, limit=_ALL)
            if d.reason == PARKED_REASON and d.key == key
        ]
        for letter in sorted(parked, key=lambda d: (d.partition, d.offset)):
            # Move the marker first: the resubmitted event must find itself the blocker.
            await self._put(marker, str(letter.event_id), expect=revision)
            if await self.letters.resubmit(letter.id):
                return
            entry = await self.markers.get(marker)
            revision = entry.revision if entry else 0
        try:
            await self.markers.delete(marker, expect=revision)
        except KeyConflict:
            return
