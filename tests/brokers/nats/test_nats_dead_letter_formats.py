"""NATS: dead-letter entries written before the shared encoding stay readable (no server)."""

from __future__ import annotations

import base64
import dataclasses
import json

from choreograph.brokers.nats.dead_letters import _parse, writes
from choreograph.core.broker import DeadLetter

LETTER = DeadLetter(
    "0190c0de-0000-7000-8000-00000000abcd", "orders", "billing", "charge", 1, 7, "k", bytes(range(256)),
    {"h": "1"}, None, "shop.order", "error", "ValueError", "boom", "Traceback", 3, 10.5, 12.25,
)  # fmt: skip


def test_an_old_entry_reads_back_as_it_was_written() -> None:
    doc = dataclasses.asdict(LETTER)
    doc["value"] = base64.b64encode(LETTER.value).decode()  # earlier versions: base64, no value_encoding
    doc["headers"] = dict(LETTER.headers)
    assert _parse(json.dumps(doc).encode()) == (LETTER, 0)
    assert _parse(json.dumps({**doc, "value": "", "chunks": 3}).encode()) == (dataclasses.replace(LETTER, value=b""), 3)


def test_a_letter_over_max_payload_goes_in_chunks_written_before_its_entry() -> None:
    letter = dataclasses.replace(LETTER, value=b"x" * 20_000)
    out = writes("B", letter, max_payload=4096 + 8000)
    *chunks, (subject, entry, _) = out
    assert subject == f"$KV.B.{letter.id}"
    assert [s for s, _, _ in chunks] == [f"$KV.B.{letter.id}.v{i}" for i in range(3)]
    parsed, count = _parse(entry)
    assert count == 3 and parsed.value == b"" and b"".join(c for _, c, _ in chunks) == letter.value
