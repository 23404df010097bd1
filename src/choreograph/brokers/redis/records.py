"""How records, retry state and dead letters are laid out in Redis values."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from choreograph.core.broker import DeadLetter, Delivery
from choreograph.core.headers import DEAD_LETTER_ID_HEADER

from .keys import offset_of


def encode_headers(headers: Mapping[str, str]) -> bytes:
    """Return headers as compact JSON (empty bytes for none)."""
    return json.dumps(dict(headers), separators=(",", ":"), ensure_ascii=False).encode() if headers else b""


def decode_headers(raw: bytes | None) -> dict[str, str]:
    """Return the headers stored by :func:`encode_headers`."""
    return dict(json.loads(raw)) if raw else {}


def encode_key(key: str | None) -> bytes:
    """Return the key argument of the publish script: empty for none, else ``=`` + key."""
    return b"" if key is None else b"=" + key.encode()


def entry_delivery(
    topic: str,
    partition: int,
    stream_id: bytes,
    fields: Mapping[bytes, bytes],
    *,
    attempt: int = 1,
    first_failure: float | None = None,
) -> Delivery:
    """Return the delivery of one stream entry."""
    key = fields.get(b"k")
    return Delivery(
        topic=topic,
        partition=partition,
        offset=offset_of(stream_id),
        value=fields.get(b"v", b""),
        key=None if key is None else key.decode(),
        headers=decode_headers(fields.get(b"h")),
        timestamp=float(fields.get(b"t", b"0")),
        attempt=attempt,
        first_failure=first_failure,
    )


def flat_entry_deliveries(
    topic: str, partition: int, entries: Iterable[tuple[bytes, Sequence[bytes]]]
) -> list[Delivery]:
    """Return the deliveries of stream entries as Redis sends them: (id, [field, value, ...]) each.

    Runs once per record read, so it walks the fields in place (a dict per
    entry, as :func:`entry_delivery` takes, cost about half the time of building
    the deliveries), and takes the layout the publish script writes for a keyed
    record without headers (``v``, ``t``, ``k``) straight away.
    """
    out: list[Delivery] = []
    append = out.append
    for stream_id, flat in entries:
        if len(flat) == 6 and flat[0] == b"v" and flat[2] == b"t" and flat[4] == b"k":  # keyed, no headers
            append(Delivery(topic, partition, offset_of(stream_id), flat[1], flat[5].decode(), None, float(flat[3])))
            continue
        value, key, headers, stamp = b"", None, None, 0.0
        walk = iter(flat)
        for name, field in zip(walk, walk):  # noqa: B905 - one iterator, read in pairs
            if name == b"v":
                value = field
            elif name == b"t":
                stamp = float(field)
            elif name == b"k":
                key = field.decode()
            elif name == b"h":
                headers = decode_headers(field)
        append(Delivery(topic, partition, offset_of(stream_id), value, key, headers, stamp))
    return out


def encode_attempts(attempt: int, first_failure: float | None, key: str | None) -> str:
    """Return the retry state of one record: attempts so far, first failure, key."""
    first = "" if first_failure is None else repr(first_failure)
    return f"{attempt}|{first}|{'' if key is None else '=' + key}"


def decode_attempts(raw: bytes) -> tuple[int, float | None, str | None]:
    """Return (attempt, first_failure, key) stored by :func:`encode_attempts`."""
    attempt, first, key = raw.decode().split("|", 2)
    return int(attempt), (float(first) if first else None), (key[1:] if key else None)


def pack_record(key: str | None, value: bytes, headers: Mapping[str, str], timestamp: float) -> bytes:
    """Return a whole record as one value (a resubmitted dead letter)."""
    meta = json.dumps({"k": key, "h": dict(headers), "t": timestamp}, separators=(",", ":"), ensure_ascii=False)
    return meta.encode() + b"\n" + value


def unpack_record(raw: bytes) -> tuple[str | None, bytes, dict[str, str], float]:
    """Return (key, value, headers, timestamp) packed by :func:`pack_record`."""
    meta, _, value = raw.partition(b"\n")
    fields: dict[str, Any] = json.loads(meta)
    return fields["k"], value, dict(fields["h"]), float(fields["t"])


def encode_dead_letter(letter: DeadLetter) -> dict[str, bytes | str]:
    """Return the hash fields of a dead letter."""
    return {
        "id": letter.id,
        "topic": letter.topic,
        "group": letter.group,
        "handler": letter.handler,
        "partition": str(letter.partition),
        "offset": str(letter.offset),
        "key": encode_key(letter.key),
        "value": bytes(letter.value),
        "headers": encode_headers(letter.headers),
        "event_id": "" if letter.event_id is None else "=" + letter.event_id,
        "event_type": "" if letter.event_type is None else "=" + letter.event_type,
        "reason": letter.reason,
        "error_type": letter.error_type,
        "error_message": letter.error_message,
        "stack": letter.stack,
        "attempts": str(letter.attempts),
        "first_failure": repr(letter.first_failure),
        "last_failure": repr(letter.last_failure),
        "status": letter.status,
    }


def _optional(raw: bytes) -> str | None:
    return raw[1:].decode() if raw else None


def decode_dead_letter(fields: Mapping[bytes, bytes]) -> DeadLetter:
    """Return the dead letter stored by :func:`encode_dead_letter`."""

    def text(name: str) -> str:
        return fields[name.encode()].decode()

    headers = decode_headers(fields[b"headers"])
    return DeadLetter(
        id=text("id"),
        topic=text("topic"),
        group=text("group"),
        handler=text("handler"),
        partition=int(text("partition")),
        offset=int(text("offset")),
        key=_optional(fields[b"key"]),
        value=fields[b"value"],
        headers=headers,
        event_id=_optional(fields[b"event_id"]),
        event_type=_optional(fields[b"event_type"]),
        reason=text("reason"),
        error_type=text("error_type"),
        error_message=text("error_message"),
        stack=text("stack"),
        attempts=int(text("attempts")),
        first_failure=float(text("first_failure")),
        last_failure=float(text("last_failure")),
        status=text("status"),
        predecessor=headers.get(DEAD_LETTER_ID_HEADER),  # the header its resubmission carried
    )
