"""How dead letters are laid out in the Kafka state table, whatever their size.

A dead letter is the row ``dl|<id>``: the :class:`DeadLetter` as JSON, its
value as latin-1 text (lossless for bytes). A letter whose row would pass
:data:`CHUNK_SIZE` — a record near Kafka's 1 MB limit takes up to twice that
as latin-1 JSON, over what a producer sends in one request — keeps its value
raw in rows ``dlv|<id>|<n>`` of at most :data:`CHUNK_SIZE` bytes, written in
the same transaction before the entry, whose JSON says how many there are
(``"chunks"``) and holds an empty value. Rows ``dlv|`` never start with
``dl|``, so listings and counts see entries only.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any, Final

from choreograph.core.broker import DeadLetter
from choreograph.core.errors import BrokerError

ENTRY: Final = "dl|"
CHUNK: Final = "dlv|"
CHUNK_SIZE: Final = 512 * 1024
"""Bytes of a letter's value per chunk row, and the largest entry row kept whole."""

Row = tuple[str, bytes | None]


def encode_letter(letter: DeadLetter) -> bytes:
    """Return a dead letter as JSON (value as latin-1 text, lossless for bytes)."""
    doc = dataclasses.asdict(letter)
    doc["value"] = bytes(letter.value).decode("latin-1")
    doc["headers"] = dict(letter.headers)
    return json.dumps(doc, ensure_ascii=False).encode()


def letter_rows(letter: DeadLetter) -> list[Row]:
    """Return the state rows that store ``letter``: chunks of its value first when it is big, then its entry."""
    body = encode_letter(letter)
    if len(body) <= CHUNK_SIZE:
        return [(f"{ENTRY}{letter.id}", body)]
    value = bytes(letter.value)
    chunks = [value[i : i + CHUNK_SIZE] for i in range(0, len(value), CHUNK_SIZE)] or [b""]
    doc: dict[str, Any] = json.loads(encode_letter(dataclasses.replace(letter, value=b"")))
    doc["chunks"] = len(chunks)
    rows: list[Row] = [(f"{CHUNK}{letter.id}|{i}", chunk) for i, chunk in enumerate(chunks)]
    rows.append((f"{ENTRY}{letter.id}", json.dumps(doc, ensure_ascii=False).encode()))
    return rows


def decode_letter(raw: bytes, rows: Mapping[str, bytes] | None = None) -> DeadLetter:
    """Return the dead letter of entry row ``raw``; its value read back from ``rows`` if it is in chunks.

    Raises BrokerError if a chunk is missing.
    """
    doc = json.loads(raw)
    chunks = int(doc.pop("chunks", 0))
    value = doc["value"].encode("latin-1")
    if chunks:
        parts = [(rows or {}).get(f"{CHUNK}{doc['id']}|{i}") for i in range(chunks)]
        if any(part is None for part in parts):
            raise BrokerError(f"dead letter {doc['id']} lost chunks of its value from the state table")
        value = b"".join(part for part in parts if part is not None)
    doc["value"] = value
    return DeadLetter(**doc)


def chunk_keys(rows: Mapping[str, bytes], dead_letter_id: str) -> list[str]:
    """The chunk rows of one dead letter present in ``rows``."""
    prefix = f"{CHUNK}{dead_letter_id}|"
    return [key for key in rows if key.startswith(prefix)]
