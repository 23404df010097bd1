"""How dead letters are laid out in the Kafka state table, whatever their size.

A dead letter is the row ``dl|<id>``: one entry of the shared encoding
(:mod:`choreograph.core.dead_letter_codec`: JSON, value base64). A letter
whose entry would pass :data:`CHUNK_SIZE` — a record near Kafka's 1 MB limit,
over what a producer sends in one request — keeps its value raw in rows
``dlv|<id>|<n>`` of at most :data:`CHUNK_SIZE` bytes, written in the same
transaction before the entry, whose JSON says how many there are
(``"chunks"``) and holds an empty value. Rows ``dlv|`` never start with
``dl|``, so listings and counts see entries only.

Entries written before the shared encoding hold their value as latin-1 text
and no ``value_encoding``; they are read as such.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from choreograph.core import dead_letter_codec as codec
from choreograph.core.broker import DeadLetter
from choreograph.core.errors import BrokerError

ENTRY: Final = "dl|"
CHUNK: Final = "dlv|"
CHUNK_SIZE: Final = 512 * 1024
"""Bytes of a letter's value per chunk row, and the largest entry row kept whole."""
LEGACY_VALUE_ENCODING: Final = "latin-1"
"""How entries written before the shared encoding hold their value."""

Row = tuple[str, bytes | None]


def letter_rows(letter: DeadLetter) -> list[Row]:
    """Return the state rows that store ``letter``: chunks of its value first when it is big, then its entry."""
    entry, chunks = codec.split(letter, CHUNK_SIZE)
    rows: list[Row] = [(f"{CHUNK}{letter.id}|{i}", chunk) for i, chunk in enumerate(chunks)]
    rows.append((f"{ENTRY}{letter.id}", entry))
    return rows


def decode_letter(raw: bytes, rows: Mapping[str, bytes] | None = None) -> DeadLetter:
    """Return the dead letter of entry row ``raw``; its value read back from ``rows`` if it is in chunks.

    Raises BrokerError if a chunk is missing.
    """
    letter, chunks = codec.decode(raw, legacy_value_encoding=LEGACY_VALUE_ENCODING)
    if not chunks:
        return letter
    parts = [(rows or {}).get(f"{CHUNK}{letter.id}|{i}") for i in range(chunks)]
    if any(part is None for part in parts):
        raise BrokerError(f"dead letter {letter.id} lost chunks of its value from the state table")
    return codec.join(letter, [part for part in parts if part is not None])


def chunk_keys(rows: Mapping[str, bytes], dead_letter_id: str) -> list[str]:
    """The chunk rows of one dead letter present in ``rows``."""
    prefix = f"{CHUNK}{dead_letter_id}|"
    return [key for key in rows if key.startswith(prefix)]
