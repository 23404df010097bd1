"""Dead letters in a JetStream KV bucket, and their resubmission.

Each dead letter is one key (its id) in bucket ``<prefix>_dlq`` holding the
:class:`DeadLetter` as JSON (bytes base64-encoded). The bucket keeps one
revision per key, so a scan of its stream yields every entry once. A status
change is a compare-and-set on the entry's revision.

Resubmission publishes the record to the partition's resubmit subject, which
only the group that gave up reads, with ``Nats-Msg-Id = dlq/<id>``; then it
flips the status to ``resubmitted`` by CAS. Two concurrent resubmits publish
one record (the second is a duplicate inside the stream's duplicate window)
and only one CAS wins; a crash between the two steps leaves the entry open,
and a later resubmit is again deduplicated (or, past the window, dropped by
the group's inbox, as the envelope keeps its id).
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Sequence
from typing import Any, Final

import nats.js.errors
from nats.aio.client import Client
from nats.js.client import JetStreamContext

from choreograph.brokers.nats import direct
from choreograph.brokers.nats.translation import translated
from choreograph.core.broker import DeadLetter
from choreograph.core.errors import NotFound

_EXPECTED_LAST: Final = "Nats-Expected-Last-Subject-Sequence"
_WRONG_LAST: Final = (10071, 10164)
_PAGE: Final = 1000
_COUNT_PAGE: Final = 64
"""Entries read per request when counting: at most 64 entries' bytes are held at once."""


def encode(letter: DeadLetter) -> bytes:
    """Serialize ``letter`` as JSON."""
    doc: dict[str, Any] = dataclasses.asdict(letter)
    doc["value"] = base64.b64encode(letter.value).decode()
    doc["headers"] = dict(letter.headers)
    return json.dumps(doc, ensure_ascii=False).encode()


def decode(raw: bytes) -> DeadLetter:
    """Deserialize what :func:`encode` wrote."""
    doc = json.loads(raw)
    doc["value"] = base64.b64decode(doc["value"])
    return DeadLetter(**doc)


class DeadLetterBucket:
    """Reads and writes the dead-letter bucket."""

    def __init__(self, nc: Client, js: JetStreamContext, bucket: str, request_timeout: float) -> None:
        self._nc = nc
        self._js = js
        self._bucket = bucket
        self._stream = f"KV_{bucket}"
        self._timeout = request_timeout

    def subject(self, dead_letter_id: str) -> str:
        """The KV subject of one entry."""
        return f"$KV.{self._bucket}.{dead_letter_id}"

    async def load(self, dead_letter_id: str) -> tuple[DeadLetter, int]:
        """Return an entry and its revision; raise NotFound if absent."""
        if not dead_letter_id or any(c not in "0123456789abcdefABCDEF-" for c in dead_letter_id):
            raise NotFound(f"no dead letter with id {dead_letter_id!r}")
        subject = self.subject(dead_letter_id)
        with translated("dead letter read"):
            found = await direct.last_values(self._nc, self._stream, [subject], self._timeout)
        stored = found.get(subject)
        if stored is None or stored.deleted:
            raise NotFound(f"no dead letter with id {dead_letter_id!r}")
        return decode(stored.data), stored.seq

    async def scan(self) -> list[DeadLetter]:
        """Return every entry, oldest first (ids are time-ordered)."""
        out: list[DeadLetter] = []
        seq = 1
        while True:
            with translated("dead letter scan"):
                page = await direct.scan(
                    self._nc, self._stream, f"$KV.{self._bucket}.>", start_seq=seq, limit=_PAGE, timeout=self._timeout
                )
            out.extend(decode(s.data) for s in page if not s.deleted and s.data)
            if len(page) < _PAGE:
                break
            seq = page[-1].seq + 1
        out.sort(key=lambda letter: (letter.first_failure, letter.id))
        return out

    async def counts(self, status: str | None) -> dict[tuple[str, str, str], int]:
        """Return how many entries have ``status`` (``None``: any) per (topic, group, reason).

        The bucket holds whole entries, so each is read, but only a small page at
        a time and none is kept: memory stays bounded whatever the entries weigh.
        """
        counts: dict[tuple[str, str, str], int] = {}
        seq = 1
        while True:
            with translated("dead letter count"):
                page = await direct.scan(
                    self._nc,
                    self._stream,
                    f"$KV.{self._bucket}.>",
                    start_seq=seq,
                    limit=_COUNT_PAGE,
                    timeout=self._timeout,
                )
            for stored in page:
                if stored.deleted or not stored.data:
                    continue
                doc = json.loads(stored.data)
                if status is None or doc["status"] == status:
                    where = (doc["topic"], doc["group"], doc["reason"])
                    counts[where] = counts.get(where, 0) + 1
            if len(page) < _COUNT_PAGE:
                return counts
            seq = page[-1].seq + 1

    async def set_status(self, letter: DeadLetter, revision: int, status: str) -> bool:
        """Change ``letter``'s status if its revision is still ``revision``; return whether it did."""
        changed = dataclasses.replace(letter, status=status)
        try:
            await self._js.publish(
                self.subject(letter.id), encode(changed), headers={_EXPECTED_LAST: str(revision)}, timeout=self._timeout
            )
        except nats.js.errors.APIError as exc:
            if exc.err_code in _WRONG_LAST:
                return False
            with translated("dead letter update"):
                raise
        except Exception as exc:
            with translated("dead letter update"):
                raise exc
        return True

    async def delete(self, dead_letter_ids: Sequence[str] | None) -> int:
        """Delete entries, whatever their status (all if ``None``); return how many went.

        Each entry's subject is purged from the bucket's stream (a KV bucket
        denies single-message deletes): every revision goes, and no delete
        marker is left. JetStream drops purged messages from its index at
        once; their bytes leave the file store when it compacts or removes
        the blocks that held them.
        """
        if dead_letter_ids is None:
            dead_letter_ids = [letter.id for letter in await self.scan()]
        count = 0
        for dead_id in dead_letter_ids:
            try:
                await self.load(dead_id)  # validates the id, and counts only entries that exist
            except NotFound:
                continue
            with translated("dead letter delete"):
                await self._js.purge_stream(self._stream, subject=self.subject(dead_id))
            count += 1
        return count

    async def purge(self, dead_letter_ids: Sequence[str] | None) -> int:
        """Mark open entries purged (all if ``None``); return how many changed."""
        if dead_letter_ids is None:
            dead_letter_ids = [letter.id for letter in await self.scan() if letter.status == "open"]
        count = 0
        for dead_id in dead_letter_ids:
            try:
                letter, revision = await self.load(dead_id)
            except NotFound:
                continue
            if letter.status == "open" and await self.set_status(letter, revision, "purged"):
                count += 1
        return count
