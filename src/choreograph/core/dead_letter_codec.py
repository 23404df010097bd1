"""One byte encoding of a dead letter for backends that store it as a blob (NATS, Kafka, Redis).

An entry is a JSON object of the :class:`~choreograph.core.broker.DeadLetter`
fields, its ``headers`` an object, its ``value`` base64 text, and
``"value_encoding": "base64"`` saying so. A letter too big for one entry of a
backend (a NATS ``max_payload``, a Kafka request) is split by :func:`split`:
the entry keeps an empty value and ``"chunks": n``, and the value goes raw in
``n`` chunk records the backend writes *before* the entry, then joins back
with :func:`join`.

Entries written before this module existed stay readable: they have no
``value_encoding``, and :func:`decode` reads their value in the encoding the
backend used then (``legacy_value_encoding``: NATS wrote base64, Kafka
latin-1 text). Redis kept a hash of fields; it reads those with its own
legacy reader (see ``brokers/redis/records.py``).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from collections.abc import Sequence
from typing import Any, Final, Literal

from choreograph.core.broker import DeadLetter

ValueEncoding = Literal["base64", "latin-1"]

VALUE_ENCODING: Final = "base64"
"""How :func:`encode` writes a value (and the ``value_encoding`` it records)."""

_FIELDS: Final = frozenset(field.name for field in dataclasses.fields(DeadLetter))


class DeadLetterDecodeError(ValueError):
    """Bytes that are not a dead-letter entry (not JSON, a field missing or of the wrong type)."""


def encode(letter: DeadLetter, *, chunks: int = 0) -> bytes:
    """Return ``letter`` as one entry; ``chunks`` > 0 records that its value is in that many chunks."""
    doc: dict[str, Any] = dataclasses.asdict(letter)
    doc["value"] = base64.b64encode(letter.value).decode("ascii")
    doc["headers"] = dict(letter.headers)
    doc["value_encoding"] = VALUE_ENCODING
    if chunks:
        doc["chunks"] = chunks
    return json.dumps(doc, ensure_ascii=False).encode()


def decode(raw: bytes | str, *, legacy_value_encoding: ValueEncoding = "base64") -> tuple[DeadLetter, int]:
    """Return (dead letter, number of chunks its value is in: 0 when the entry holds it) of an entry.

    An entry written without ``value_encoding`` (before this encoding) has its
    value read as ``legacy_value_encoding``. Raises DeadLetterDecodeError if
    ``raw`` is not an entry.
    """
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict):
            raise DeadLetterDecodeError("a dead-letter entry is a JSON object")
        chunks = int(doc.pop("chunks", 0))
        encoding = doc.pop("value_encoding", legacy_value_encoding)
        text = doc["value"]
        if not isinstance(text, str):
            raise DeadLetterDecodeError("the value of a dead-letter entry is text")
        if encoding == "base64":
            doc["value"] = base64.b64decode(text, validate=True)
        elif encoding == "latin-1":
            doc["value"] = text.encode("latin-1")
        else:
            raise DeadLetterDecodeError(f"unknown value_encoding {str(encoding)[:40]!r} of a dead-letter entry")
        unknown = set(doc) - _FIELDS
        if unknown:
            raise DeadLetterDecodeError(f"unknown fields in a dead-letter entry: {', '.join(sorted(unknown))[:200]}")
        return DeadLetter(**doc), chunks
    except DeadLetterDecodeError:
        raise
    except (ValueError, TypeError, KeyError, binascii.Error, RecursionError) as exc:
        raise DeadLetterDecodeError(f"not a dead-letter entry: {str(exc)[:200]}") from None


def split(letter: DeadLetter, max_entry: int, *, text_cap: int | None = None) -> tuple[bytes, list[bytes]]:
    """Return (entry, chunks of the value) storing ``letter`` in records of at most ``max_entry`` bytes.

    No chunks when the whole entry fits (``max_entry`` <= 0: no limit). Else
    the value goes in chunks of ``max_entry`` bytes (at least one, possibly
    empty) and the entry holds the rest, its stack and error message cut to
    ``text_cap`` characters if given. The caller checks that this entry fits.
    """
    whole = encode(letter)
    if max_entry <= 0 or len(whole) <= max_entry:
        return whole, []
    value = bytes(letter.value)
    chunks = [value[i : i + max_entry] for i in range(0, len(value), max_entry)] or [b""]
    small = dataclasses.replace(letter, value=b"")
    if text_cap is not None:
        small = dataclasses.replace(
            small, stack=letter.stack[-text_cap:], error_message=letter.error_message[:text_cap]
        )
    return encode(small, chunks=len(chunks)), chunks


def join(letter: DeadLetter, chunks: Sequence[bytes]) -> DeadLetter:
    """Return ``letter`` (decoded from an entry with ``chunks``) with its value read back from them, in order."""
    return dataclasses.replace(letter, value=b"".join(chunks))
