"""Kafka: dead-letter rows written before the shared encoding (value as latin-1 text) stay readable (no server)."""

from __future__ import annotations

import dataclasses
import json

from choreograph.brokers.kafka.letters import CHUNK, CHUNK_SIZE, ENTRY, decode_letter, letter_rows
from choreograph.core.broker import DeadLetter

LETTER = DeadLetter(
    "0190c0de-0000-7000-8000-00000000abcd", "orders", "billing", "charge", 1, 7, "k", bytes(range(256)),
    {"h": "1"}, None, "shop.order", "error", "ValueError", "boom", "Traceback", 3, 10.5, 12.25,
)  # fmt: skip


def _old_row(letter: DeadLetter, **extra: object) -> bytes:
    """A row as earlier versions wrote it: the value as latin-1 text, no value_encoding."""
    doc = dataclasses.asdict(letter)
    doc["value"] = bytes(letter.value).decode("latin-1")
    doc["headers"] = dict(letter.headers)
    return json.dumps({**doc, **extra}, ensure_ascii=False).encode()


def test_an_old_row_reads_back_as_it_was_written() -> None:
    assert decode_letter(_old_row(LETTER)) == LETTER


def test_an_old_chunked_row_reads_its_value_from_the_chunk_rows() -> None:
    empty = dataclasses.replace(LETTER, value=b"")
    rows = {f"{CHUNK}{LETTER.id}|0": LETTER.value[:100], f"{CHUNK}{LETTER.id}|1": LETTER.value[100:]}
    assert decode_letter(_old_row(empty, chunks=2), rows) == LETTER


def test_new_rows_round_trip_whole_and_in_chunks() -> None:
    for letter in (LETTER, dataclasses.replace(LETTER, value=b"\xff" * (CHUNK_SIZE + 10))):
        rows = dict(letter_rows(letter))
        entry = rows.pop(f"{ENTRY}{letter.id}")
        assert entry is not None
        assert decode_letter(entry, {key: value for key, value in rows.items() if value is not None}) == letter
