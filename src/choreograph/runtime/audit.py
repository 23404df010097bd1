"""The audit trail: who did what to the log, when, and to how many — stored with the broker.

Every operator action that changes what a deployment will process (a replay,
a consumer-group reset, retrying, editing, archiving, restoring, purging or
deleting dead letters, changing a dead-letter setting) is recorded as one
:class:`AuditRecord` in the broker's key-value namespace ``audit`` (the
:class:`~choreograph.core.kv.KeyValueProvider` capability), so every operator
of the deployment sees the same trail, whichever machine they ran it from.

Usage, from any command or tool (the replay tool included)::

    audit = AuditLog.of(broker)            # ConfigurationError if the backend keeps no KV
    await audit.record("retry", target="group 3f2a...", count=12, actor=None, details={"rate": 5})
    for rec in await audit.records(limit=50):
        ...

Records are written once and never changed: each is its own key,
``r/<UUIDv7>``, so keys sort by time and two operators recording at once never
contend. ``actor=None`` means the OS user running the process.
"""

from __future__ import annotations

import getpass
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from choreograph.core.clock import Clock, SystemClock
from choreograph.core.errors import ConfigurationError
from choreograph.core.ids import new_id
from choreograph.core.kv import MAX_VALUE_BYTES, KeyValueProvider, KeyValueStore

NAMESPACE = "audit"
ACTIONS = frozenset(
    {
        "replay",
        "reset",
        "copy",
        "retry",
        "edit",
        "archive",
        "restore",
        "expire",
        "note",
        "unblock",
        "purge",
        "delete",
        "settings",
    }
)
"""The actions the trail knows; recording another is a programming error (ConfigurationError)."""

_PREFIX = "r/"
_MAX_ACTOR = 100


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One operator action: ``actor`` did ``action`` to ``target`` (``count`` items) at ``at`` (epoch seconds)."""

    id: str
    at: float
    actor: str
    action: str
    target: str
    count: int
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_doc(self) -> dict[str, Any]:
        """The record as a JSON-ready dict (the stored form and ``--json``'s)."""
        return {
            "id": self.id,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "count": self.count,
            "details": dict(self.details),
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> AuditRecord:
        """Rebuild a record from :meth:`to_doc`'s form; fields of the wrong type become neutral values."""
        details = doc.get("details")
        return cls(
            id=str(doc.get("id", "")),
            at=float(doc.get("at") or 0.0),
            actor=str(doc.get("actor", "")),
            action=str(doc.get("action", "")),
            target=str(doc.get("target", "")),
            count=int(doc.get("count") or 0),
            details=details if isinstance(details, dict) else {},
        )


def default_actor() -> str:
    """The OS user running this process (``unknown`` if the system cannot say)."""
    try:
        return getpass.getuser() or "unknown"
    except Exception:  # no user database entry (some containers): still record the action
        return "unknown"


def check_actor(actor: str) -> str:
    """Refuse an actor name that is empty, too long, or holds control characters (it is shown to operators)."""
    if not (0 < len(actor) <= _MAX_ACTOR) or not actor.isprintable():
        raise ConfigurationError(f"--actor must be 1-{_MAX_ACTOR} printable characters")
    return actor


class AuditLog:
    """The audit trail kept in one key-value store (normally the broker's ``audit`` namespace)."""

    def __init__(self, store: KeyValueStore, *, clock: Clock | None = None) -> None:
        self.store = store
        self._clock = clock or SystemClock()

    @classmethod
    def of(cls, broker: object) -> AuditLog:
        """The trail stored with ``broker``; ConfigurationError if the backend keeps no key-value store."""
        if not isinstance(broker, KeyValueProvider):
            raise ConfigurationError(
                f"this broker ({type(broker).__name__}) keeps no key-value store, so it cannot keep an audit "
                "trail; operator actions on it are refused rather than left unrecorded"
            )
        return cls(broker.key_value(NAMESPACE))

    async def record(
        self,
        action: str,
        *,
        target: str,
        count: int,
        actor: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> AuditRecord:
        """Store one record and return it. ``actor`` defaults to the OS user.

        ``details`` too large for one entry are replaced by a note saying so
        (the action, actor, target and count are always kept).
        """
        if action not in ACTIONS:
            raise ConfigurationError(f"unknown audit action {action!r}; known: {', '.join(sorted(ACTIONS))}")
        rec = AuditRecord(
            id=new_id(),
            at=self._clock.now(),
            actor=check_actor(actor) if actor is not None else default_actor(),
            action=action,
            target=target,
            count=count,
            details=dict(details or {}),
        )
        raw = orjson.dumps(rec.to_doc(), default=str)
        if len(raw) > MAX_VALUE_BYTES:
            rec = AuditRecord(rec.id, rec.at, rec.actor, rec.action, rec.target, rec.count, {"truncated": True})
            raw = orjson.dumps(rec.to_doc())
        await self.store.put(_PREFIX + rec.id, raw, expect=0)
        return rec

    async def records(
        self, *, action: str | None = None, since: float | None = None, limit: int = 100
    ) -> list[AuditRecord]:
        """The most recent ``limit`` records (oldest of them first), optionally of one action or since a time.

        ``limit`` below one gives no records.
        """
        found: list[AuditRecord] = []
        if limit < 1:
            return found
        for key in reversed(await self.store.keys(_PREFIX)):
            entry = await self.store.get(key)
            if entry is None:
                continue
            try:
                doc = orjson.loads(entry.value)
                rec = AuditRecord.from_doc(doc if isinstance(doc, dict) else {})
            except (orjson.JSONDecodeError, TypeError, ValueError):
                continue  # an entry that is not ours: the trail still lists the rest
            if since is not None and rec.at < since:
                break  # keys are time-ordered: everything further is older
            if action is None or rec.action == action:
                found.append(rec)
                if len(found) >= limit:
                    break
        return found[::-1]
