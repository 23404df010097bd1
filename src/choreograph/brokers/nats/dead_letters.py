"""Dead letters in a JetStream KV bucket, and their resubmission.

Each dead letter is one key (its id) in bucket ``<prefix>_dlq`` holding the
:class:`DeadLetter` in the shared encoding (:mod:`choreograph.core.dead_letter_codec`: JSON, bytes
base64-encoded). The bucket keeps one
revision per key, so a scan of its stream yields every entry once. A status
change is a compare-and-set on the entry's revision.

A dead letter of any record the server accepted can be stored: when its JSON
would not fit in the server's ``max_payload`` (base64 makes a record of
~786 KB too big for 1 MB), its value is stored raw in chunks under keys
``<id>.v<n>`` written before the entry, and the entry says how many
(``"chunks"``). Scans and counts read ``<id>`` keys only (``$KV.<bucket>.*``).
Its stack and error message are cut to 16 KB first; an entry still too big
(headers alone past the limit) raises :class:`DeadLetterTooLarge`.

Resubmission publishes the record to the partition's resubmit subject, which
only the group that gave up reads, with ``Nats-Msg-Id = dlq/<id>``; then it
flips the status to ``resubmitted`` by CAS. Two concurrent resubmits publish
one record (the second is a duplicate inside the stream's duplicate window)
and only one CAS wins; a crash between the two steps leaves the entry open,
and a later resubmit is again deduplicated (or, past the window, dropped by
the group's inbox, as the envelope keeps its id).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Final

import nats.js.errors
from nats.aio.client import Client
from nats.js.client import JetStreamContext

from choreograph.brokers.nats import direct
from choreograph.brokers.nats.translation import translated
from choreograph.core import dead_letter_codec as codec
from choreograph.core.broker import DeadLetter
from choreograph.core.enums import DeadLetterStatus
from choreograph.core.errors import BrokerError, NotFound

_EXPECTED_LAST: Final = "Nats-Expected-Last-Subject-Sequence"
_WRONG_LAST: Final = (10071, 10164)
_PAGE: Final = 1000
_COUNT_PAGE: Final = 64
"""Entries read per request when counting: at most 64 entries' bytes are held at once."""
_SLACK: Final = 4096
"""Bytes of ``max_payload`` left for a KV write's subject, headers and protocol line."""
_TEXT_CAP: Final = 16 * 1024
"""Characters of stack and error message kept in an entry whose value goes in chunks."""


class DeadLetterTooLarge(BrokerError):
    """A dead letter whose entry cannot fit the server's max_payload even with its value in chunks."""


def encode(letter: DeadLetter) -> bytes:
    """Serialize ``letter`` as one entry of the shared encoding (:mod:`choreograph.core.dead_letter_codec`)."""
    return codec.encode(letter)


def decode(raw: bytes) -> DeadLetter:
    """Deserialize what :func:`encode` wrote (an entry whose value is in chunks has an empty value here)."""
    return _parse(raw)[0]


def _parse(raw: bytes) -> tuple[DeadLetter, int]:
    """(dead letter, number of chunks its value is in: 0 when inside the entry) of an entry.

    Entries written before the shared encoding (no ``value_encoding``) held their value base64 too.
    """
    return codec.decode(raw, legacy_value_encoding="base64")


def chunk_key(dead_letter_id: str, index: int) -> str:
    """The KV key of chunk ``index`` of a dead letter's value."""
    return f"{dead_letter_id}.v{index}"


def writes(bucket: str, letter: DeadLetter, max_payload: int) -> list[tuple[str, bytes, None]]:
    """Return the KV writes (subject, data, no headers) that store ``letter``, in the order to make them.

    One write when its JSON fits ``max_payload`` (0: no limit); else the
    chunks of its value, then the entry naming how many there are. Raises
    DeadLetterTooLarge if even that entry cannot fit.
    """
    limit = max(1, max_payload - _SLACK) if max_payload else 0
    entry, chunks = codec.split(letter, limit, text_cap=_TEXT_CAP)
    if chunks and len(entry) + _SLACK > max_payload:
        raise DeadLetterTooLarge(
            f"dead letter {letter.id} of {letter.topic}[{letter.partition}]@{letter.offset} needs {len(entry)} bytes "
            f"without its value, over the server's max_payload of {max_payload}"
        )
    out: list[tuple[str, bytes, None]] = [
        (f"$KV.{bucket}.{chunk_key(letter.id, i)}", chunk, None) for i, chunk in enumerate(chunks)
    ]
    out.append((f"$KV.{bucket}.{letter.id}", entry, None))
    return out


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
        letter, chunks = _parse(stored.data)
        return await self._joined(letter, chunks), stored.seq

    async def _joined(self, letter: DeadLetter, chunks: int) -> DeadLetter:
        """``letter`` with its value read back from its ``chunks`` (itself if none)."""
        if not chunks:
            return letter
        subjects = [self.subject(chunk_key(letter.id, i)) for i in range(chunks)]
        with translated("dead letter read"):
            found = await direct.last_values(self._nc, self._stream, subjects, self._timeout)
        parts = [found.get(subject) for subject in subjects]
        if any(part is None or part.deleted for part in parts):
            raise BrokerError(f"dead letter {letter.id} lost chunks of its value (bucket {self._bucket})")
        return codec.join(letter, [part.data for part in parts if part is not None])

    async def scan(self) -> list[DeadLetter]:
        """Return every entry, oldest first (ids are time-ordered)."""
        out: list[DeadLetter] = []
        seq = 1
        while True:
            with translated("dead letter scan"):
                page = await direct.scan(
                    self._nc, self._stream, f"$KV.{self._bucket}.*", start_seq=seq, limit=_PAGE, timeout=self._timeout
                )
            for stored in page:
                if not stored.deleted and stored.data:
                    out.append(await self._joined(*_parse(stored.data)))
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
                    f"$KV.{self._bucket}.*",  # entries only, not the chunks of their values
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
        *chunks, (subject, entry, _) = writes(self._bucket, changed, self._nc.max_payload)
        try:
            for chunk_subject, chunk, _ in chunks:  # the same bytes again: the entry must name chunks that exist
                await self._js.publish(chunk_subject, chunk, timeout=self._timeout)
            await self._js.publish(subject, entry, headers={_EXPECTED_LAST: str(revision)}, timeout=self._timeout)
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
                # and the chunks of a value stored in parts (keys <id>.v<n>), if any
                await self._js.purge_stream(self._stream, subject=f"{self.subject(dead_id)}.>")
            count += 1
        return count

    async def purge(self, dead_letter_ids: Sequence[str] | None) -> int:
        """Mark open entries purged (all if ``None``); return how many changed."""
        if dead_letter_ids is None:
            dead_letter_ids = [letter.id for letter in await self.scan() if letter.status == DeadLetterStatus.OPEN]
        count = 0
        for dead_id in dead_letter_ids:
            try:
                letter, revision = await self.load(dead_id)
            except NotFound:
                continue
            if letter.status == DeadLetterStatus.OPEN and await self.set_status(
                letter, revision, DeadLetterStatus.PURGED
            ):
                count += 1
        return count
