"""Dead-letter operations: failure groups, paced retries, edit-and-retry, archive, notes — each one audited.

:class:`DeadLetterDesk` works on any broker that is a
:class:`~choreograph.core.broker.DeadLetterStore`. What the dead-letter
protocol itself does not keep — which entries are archived (and until when),
which were edited, the notes on failure groups, and whether editing is allowed
— lives in the broker's key-value namespace ``dead_letters``, and every action
is recorded in the audit trail (:mod:`choreograph.runtime.audit`). Reading
(listing, grouping) works on any dead-letter store; an action on a broker that
keeps no key-value store is refused with a ConfigurationError, because it could
be neither marked nor audited.

Archiving is a soft delete: the entry stays ``open`` in the broker, restorable,
but listings, groups and retries leave it out; :meth:`DeadLetterDesk.expire`
deletes archived entries whose retention has passed.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

import orjson

from choreograph.core import codec
from choreograph.core.broker import DeadLetter, DeadLetterStore
from choreograph.core.enums import DeadLetterStatus
from choreograph.core.envelope import Envelope, now_rfc3339
from choreograph.core.errors import ChoreographError, ConfigurationError, DecodeError
from choreograph.core.fingerprint import FailureGroup, failure_groups, fingerprint
from choreograph.core.ids import new_id
from choreograph.core.kv import MAX_KEY_LENGTH, KeyValueProvider, KeyValueStore
from choreograph.runtime.audit import AuditLog, default_actor
from choreograph.runtime.replay_range import check_rate

NAMESPACE = "dead_letters"
DEFAULT_RETENTION = 14 * 86400.0
"""How long an archived dead letter is kept before :meth:`DeadLetterDesk.expire` deletes it (14 days)."""
MAX_AUDITED_IDS = 2000
"""At most this many entry ids are kept in one audit record (its size is bounded)."""
_ALL = 10_000_000

_ARCHIVED = "archived/"
_EDITED = "edited/"
_NOTE = "note/"
_SETTINGS = "settings"


class EditingDisabled(ConfigurationError):
    """Edit-and-retry is off for this deployment (the default)."""

    def __init__(self) -> None:
        super().__init__(
            "editing dead letters is off for this deployment; an operator turns it on with "
            "`choreograph dlq settings --editing on` (recorded in the audit trail)"
        )


@dataclass(slots=True)
class RetryReport:
    """What one retry did: entries handed back, skipped, and how many of them had already failed a retry."""

    retried: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """Not open any more when their turn came: already retried, or purged."""
    archived: list[str] = field(default_factory=list)
    """Archived entries named by id: left alone (restore them first)."""
    failed_again: int = 0
    """How many of the retried entries were themselves a retry that failed again."""


@dataclass(frozen=True, slots=True)
class EditResult:
    """An edit-and-retry: the dead letter, the event id it carried, and the new id of the edited copy."""

    dead_letter_id: str
    original_event_id: str
    new_event_id: str


def entry_key(prefix: str, dead_letter_id: str) -> str:
    """The key of a dead letter's mark: its id percent-encoded, or a hash of it when that is too long.

    Dead-letter ids come from the backend and are not trusted to be valid keys.
    """
    quoted = quote(dead_letter_id, safe="-._~")
    if len(prefix) + len(quoted) <= MAX_KEY_LENGTH:
        return prefix + quoted
    return f"{prefix}#{hashlib.sha256(dead_letter_id.encode('utf-8', 'surrogatepass')).hexdigest()}"


def _doc(value: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return {}
    return doc if isinstance(doc, dict) else {}


class DeadLetterDesk:
    """The operator's dead-letter operations on one broker; ``actor`` (None: the OS user) signs the audit records."""

    def __init__(self, broker: object, *, actor: str | None = None) -> None:
        if not isinstance(broker, DeadLetterStore):
            raise ConfigurationError(f"this broker ({type(broker).__name__}) keeps no dead letters")
        self.letters: DeadLetterStore = broker
        self.actor = actor
        self._meta: KeyValueStore | None = broker.key_value(NAMESPACE) if isinstance(broker, KeyValueProvider) else None
        self._audit: AuditLog | None = AuditLog.of(broker) if self._meta is not None else None

    # ---------------------------------------------------------------- reading

    @property
    def audit(self) -> AuditLog:
        """The broker's audit trail; ConfigurationError if the backend keeps no key-value store."""
        self.meta()
        assert self._audit is not None
        return self._audit

    def meta(self) -> KeyValueStore:
        """The ``dead_letters`` key-value namespace; ConfigurationError naming the backend if it has none."""
        if self._meta is None:
            raise ConfigurationError(
                f"this broker ({type(self.letters).__name__}) keeps no key-value store, so dead-letter "
                "actions could not be marked or audited; use a backend with the key-value capability"
            )
        return self._meta

    async def archived(self) -> set[str]:
        """Ids of archived entries (none when the backend keeps no key-value store)."""
        if self._meta is None:
            return set()
        found: set[str] = set()
        for key in await self._meta.keys(_ARCHIVED):
            found.add(await self._archived_id(key))
        return found

    async def _archived_id(self, key: str) -> str:
        name = key[len(_ARCHIVED) :]
        if not name.startswith("#"):
            return unquote(name)
        entry = await self.meta().get(key)  # a hashed key: the id is in the mark
        return str(_doc(entry.value).get("id", "")) if entry else ""

    async def entries(
        self,
        *,
        status: str | None = DeadLetterStatus.OPEN,
        consumer_group: str | None = None,
        archived: bool = False,
        limit: int | None = None,
    ) -> list[DeadLetter]:
        """Dead letters of ``status``, oldest first, at most ``limit``; archived ones only if ``archived``."""
        marks = await self.archived()
        # Not archived: reading ``limit`` plus the archived count is enough to fill the page.
        fetch = _ALL if limit is None or archived else limit + len(marks)
        letters = await self.letters.dead_letters(group=consumer_group, status=status, limit=fetch)
        return [d for d in letters if (d.id in marks) == archived][:limit]

    async def groups(self, *, status: str | None = DeadLetterStatus.OPEN, archived: bool = False) -> list[FailureGroup]:
        """Failure groups of the entries :meth:`entries` returns, largest first."""
        return failure_groups(await self.entries(status=status, archived=archived))

    async def select(
        self,
        ids: Sequence[str] = (),
        *,
        group: str | None = None,
        consumer_group: str | None = None,
        status: str | None = DeadLetterStatus.OPEN,
        archived: bool = False,
    ) -> list[DeadLetter]:
        """The entries named by ``ids`` (any status, NotFound if absent) plus those of failure group ``group``.

        Group members are taken from :meth:`entries` with ``status``, ``consumer_group`` and ``archived``.
        """
        chosen: dict[str, DeadLetter] = {}
        for dead_letter_id in ids:
            chosen[dead_letter_id] = await self.letters.dead_letter(dead_letter_id)
        if group is not None:
            for letter in await self.entries(status=status, consumer_group=consumer_group, archived=archived):
                if fingerprint(letter) == group:
                    chosen.setdefault(letter.id, letter)
        return list(chosen.values())

    async def notes(self) -> dict[str, dict[str, Any]]:
        """Notes per failure-group fingerprint: ``{"text", "at", "actor"}``."""
        if self._meta is None:
            return {}
        found: dict[str, dict[str, Any]] = {}
        for key in await self._meta.keys(_NOTE):
            entry = await self._meta.get(key)
            if entry is not None:
                found[key[len(_NOTE) :]] = _doc(entry.value)
        return found

    async def edited(self, dead_letter_id: str) -> dict[str, Any] | None:
        """The edit mark of an entry (``new_event_id``, ``at``, ``actor``), or None if it was not edited."""
        if self._meta is None:
            return None
        entry = await self._meta.get(entry_key(_EDITED, dead_letter_id))
        return _doc(entry.value) if entry else None

    async def editing_enabled(self) -> bool:
        """Whether edit-and-retry is allowed for this deployment (off unless an operator turned it on)."""
        if self._meta is None:
            return False
        entry = await self._meta.get(_SETTINGS)
        return bool(entry and _doc(entry.value).get("editing") is True)

    # ---------------------------------------------------------------- actions

    async def set_editing(self, enabled: bool) -> None:
        """Allow or forbid edit-and-retry for every operator of this deployment; audited."""
        meta = self.meta()
        entry = await meta.get(_SETTINGS)
        settings = _doc(entry.value) if entry else {}
        settings["editing"] = enabled
        await meta.put(_SETTINGS, orjson.dumps(settings), expect=entry.revision if entry else 0)
        await self.audit.record(
            "settings", target="dead-letter editing", count=1, actor=self.actor, details={"editing": enabled}
        )

    async def retry(
        self,
        letters: Sequence[DeadLetter],
        *,
        rate: float | None = None,
        target: str,
        group: str | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> RetryReport:
        """Resubmit ``letters`` at most ``rate`` per second (None: as fast as the broker takes them); audited.

        Each resubmission is atomic and idempotent in the broker, so an entry
        retried meanwhile by someone else is counted as skipped, never sent
        twice. ``on_progress(done, total)`` is called after each entry; ``target``
        (what was asked for) and ``group`` (a failure group's fingerprint) go into the audit record.
        """
        check_rate(rate)
        audit = self.audit
        marks = await self.archived()
        report = RetryReport()
        start = time.monotonic()
        try:
            for index, letter in enumerate(letters):
                if rate is not None:
                    # Paced from the start, not per entry, so a slow resubmit does not lower the rate.
                    delay = start + index / rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                if letter.id in marks:
                    report.archived.append(letter.id)
                elif await self.letters.resubmit(letter.id):
                    report.retried.append(letter.id)
                    report.failed_again += letter.predecessor is not None
                else:
                    report.skipped.append(letter.id)
                if on_progress is not None:
                    on_progress(index + 1, len(letters))
        finally:  # an interrupted retry is recorded with what it did
            if report.retried or report.skipped or report.archived:
                await audit.record(
                    "retry",
                    target=target,
                    count=len(report.retried),
                    actor=self.actor,
                    details={
                        "fingerprint": group,
                        "rate": rate,
                        "skipped": len(report.skipped),
                        "archived": len(report.archived),
                        "failed_again_before": report.failed_again,
                        "ids": report.retried[:MAX_AUDITED_IDS],
                        "ids_truncated": len(report.retried) > MAX_AUDITED_IDS,
                    },
                )
        return report

    async def edit(
        self,
        letter: DeadLetter,
        data: Any,
        *,
        validate: Callable[[str, int, Any], None],
        seal: Callable[[Envelope], Awaitable[Envelope]] | None = None,
    ) -> EditResult:
        """Send an edited copy of ``letter``'s event to its group and mark the original edited; audited.

        ``seal`` turns the copy into what is sent (signed and encrypted again
        with the operator's keys: the original's signature cannot cover the
        edited data); nothing is sent if it raises.

        ``validate(event_type, version, data)`` must raise (any exception) if
        ``data`` breaks the event's schema: nothing is sent then. The copy has
        a new id, the original event as its cause and the original's
        correlation; it goes through the broker's resubmission, so the original
        entry becomes ``resubmitted`` in the same step and cannot be retried
        again. Raises :class:`EditingDisabled` unless editing is on.
        """
        self.meta()
        if not await self.editing_enabled():
            raise EditingDisabled()
        if letter.status != DeadLetterStatus.OPEN:
            raise ChoreographError(f"dead letter {letter.id} is {letter.status}: only an open entry can be edited")
        if letter.id in await self.archived():
            raise ChoreographError(f"dead letter {letter.id} is archived: restore it before editing")
        try:
            original = codec.decode(letter.value)
        except DecodeError as exc:
            raise ChoreographError(
                f"dead letter {letter.id} holds no readable event ({exc}); it cannot be edited"
            ) from None
        validate(original.type, original.schemaversion or 1, data)
        edited = original.replace(
            id=new_id(),
            data=data,
            time=now_rfc3339(),
            causationid=original.id,
            correlationid=original.correlationid or original.id,
        )
        if seal is not None:
            edited = await seal(edited)
        if not await self.letters.resubmit(letter.id, codec.encode(edited)):
            raise ChoreographError(f"dead letter {letter.id} was retried or purged meanwhile; nothing was sent")
        result = EditResult(letter.id, original.id, edited.id)
        mark = {
            "id": letter.id,
            "new_event_id": edited.id,
            "original_event_id": original.id,
            "at": time.time(),
            "actor": self.actor or default_actor(),
        }
        await self.meta().put(entry_key(_EDITED, letter.id), orjson.dumps(mark))
        await self.audit.record(
            "edit",
            target=f"dead letter {letter.id}",
            count=1,
            actor=self.actor,
            details={"fingerprint": fingerprint(letter), "original_event_id": original.id, "new_event_id": edited.id},
        )
        return result

    async def archive(
        self, letters: Iterable[DeadLetter], *, retention: float, target: str, group: str | None = None
    ) -> int:
        """Archive ``letters`` for ``retention`` seconds; return how many were not archived already. Audited."""
        meta = self.meta()
        marks = await self.archived()
        now = time.time()
        done = 0
        for letter in letters:
            if letter.id in marks:
                continue
            doc = {"id": letter.id, "at": now, "until": now + retention, "fingerprint": fingerprint(letter)}
            await meta.put(entry_key(_ARCHIVED, letter.id), orjson.dumps(doc))
            done += 1
        await self.audit.record(
            "archive",
            target=target,
            count=done,
            actor=self.actor,
            details={"retention": retention, "fingerprint": group},
        )
        return done

    async def restore(self, letters: Iterable[DeadLetter], *, target: str, group: str | None = None) -> int:
        """Bring archived ``letters`` back to the listings; return how many were archived. Audited."""
        meta = self.meta()
        done = 0
        for letter in letters:
            done += await meta.delete(entry_key(_ARCHIVED, letter.id))
        await self.audit.record("restore", target=target, count=done, actor=self.actor, details={"fingerprint": group})
        return done

    async def expire(self, *, now: float | None = None) -> int:
        """Delete archived entries whose retention has passed (bytes included); return how many. Audited."""
        meta = self.meta()
        moment = time.time() if now is None else now
        due: list[str] = []
        for key in await meta.keys(_ARCHIVED):
            entry = await meta.get(key)
            if entry is not None and float(_doc(entry.value).get("until") or 0) <= moment:
                due.append(await self._archived_id(key))
        removed = await self.letters.purge(due, delete=True) if due else 0
        for dead_letter_id in due:
            await meta.delete(entry_key(_ARCHIVED, dead_letter_id))
        if due:
            await self.audit.record("expire", target="archived dead letters", count=removed, actor=self.actor)
        return removed

    async def purge(self, letters: Sequence[str] | None, *, delete: bool, target: str, group: str | None = None) -> int:
        """Purge (or with ``delete`` erase) entries by id, all open ones if None; return how many. Audited."""
        audit = self.audit
        count = await self.letters.purge(letters, delete=delete)
        if delete and self._meta is not None:
            for dead_letter_id in letters if letters is not None else await self.archived():
                await self._meta.delete(entry_key(_ARCHIVED, dead_letter_id))
        await audit.record(
            "delete" if delete else "purge",
            target=target,
            count=count,
            actor=self.actor,
            details={"fingerprint": group},
        )
        return count

    async def note(self, group: str, text: str | None) -> None:
        """Set (or with None remove) the note on failure group ``group``; audited."""
        meta = self.meta()
        if text is None:
            await meta.delete(_NOTE + group)
        else:
            await meta.put(
                _NOTE + group, orjson.dumps({"text": text, "at": time.time(), "actor": self.actor or default_actor()})
            )
        await self.audit.record(
            "note", target=f"group {group}", count=1, actor=self.actor, details={"fingerprint": group, "text": text}
        )

    async def failed_again(self, retried_ids: Iterable[str], *, letters: Sequence[DeadLetter] | None = None) -> int:
        """How many dead letters (any status; or of ``letters``, read once by a caller) retry one of ``retried_ids``."""
        wanted = set(retried_ids)
        if letters is None:
            letters = await self.letters.dead_letters(status=None, limit=_ALL)
        return sum(1 for d in letters if d.predecessor in wanted)
