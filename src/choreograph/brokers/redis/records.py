"""How records, retry state and dead letters are laid out in Redis values."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from choreograph.core import dead_letter_codec as codec
from choreograph.core.broker import DeadLetter, Delivery
from choreograph.core.headers import DEAD_LETTER_ID_HEADER

from .keys import offset_of, record_offset


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
    """Return the delivery of one stream entry (fields as a dict); never raises (see :func:`translate_entry`)."""
    return translate_entry(
        topic, partition, stream_id, [x for pair in fields.items() for x in pair], attempt, first_failure
    )


def flat_entry_deliveries(
    topic: str, partition: int, entries: Iterable[tuple[bytes, Sequence[bytes]]]
) -> list[Delivery]:
    """Return the deliveries of stream entries as Redis sends them: (id, [field, value, ...]) each.

    Runs once per record read, so it takes the layout the publish script
    writes for a keyed record without headers (``v``, ``t``, ``k``, id
    ``<n>-0``) straight away, and leaves everything else to
    :func:`translate_entry`. Never raises.
    """
    out: list[Delivery] = []
    append = out.append
    for stream_id, flat in entries:
        if len(flat) == 6 and flat[0] == b"v" and flat[2] == b"t" and flat[4] == b"k" and stream_id.endswith(b"-0"):
            try:  # keyed, no headers: the common case
                append(
                    Delivery(topic, partition, offset_of(stream_id), flat[1], flat[5].decode(), None, float(flat[3]))
                )
                continue
            except ValueError:  # a foreign entry in our layout (UnicodeDecodeError is a ValueError)
                pass
        append(translate_entry(topic, partition, stream_id, flat))
    return out


_FIELDS: Final = frozenset({b"v", b"t", b"k", b"h"})


def translate_entry(
    topic: str,
    partition: int,
    stream_id: bytes | str,
    flat: Sequence[bytes],
    attempt: int = 1,
    first_failure: float | None = None,
) -> Delivery:
    """Return the delivery of one stream entry, ``flat`` being [field, value, ...]; never raises.

    An entry the publish script did not write — an id not of the form
    ``<n>-0``, a field missing (``v``, ``t``), unknown or repeated, a key or
    headers that are not UTF-8, headers that are not a JSON object of strings,
    a timestamp that is not a number — is a delivery with ``fault`` saying
    what is wrong. Its key and headers are what could be read (undecodable
    bytes shown as ``\\xNN``); its value is ``v`` when the entry has our layout,
    else every field as ``name: value`` lines, so the dead letter keeps them.
    """
    faults: list[str] = []
    sid = stream_id.decode("ascii", "backslashreplace") if isinstance(stream_id, bytes) else str(stream_id)
    try:
        offset = record_offset(sid)
    except ValueError:
        offset, faults = -1, [f"stream id {sid!r} is not an id"]
    else:
        if not sid.endswith("-0") or offset < 0:
            faults.append(f"stream id {sid} was not assigned by choreograph (another client added this entry)")
    found: dict[bytes, bytes] = {}
    for i in range(0, len(flat) - 1, 2):
        name, field = bytes(flat[i]), bytes(flat[i + 1])
        if name not in _FIELDS:
            faults.append(f"unknown field {_show(name)}")
        elif name in found:
            faults.append(f"field {_show(name)} appears twice")
        found.setdefault(name, field)
    if len(flat) % 2:
        faults.append("odd number of field names and values")
    missing = [name.decode() for name in (b"v", b"t") if name not in found]
    if missing:
        faults.append(f"missing field(s) {', '.join(missing)}")
    key: str | None = None
    raw_key = found.get(b"k")
    if raw_key is not None:
        try:
            key = raw_key.decode()
        except UnicodeDecodeError:
            key = raw_key.decode("utf-8", "backslashreplace")
            faults.append("key is not UTF-8")
    headers: dict[str, str] = {}
    raw_headers = found.get(b"h")
    if raw_headers:
        try:
            loaded = json.loads(raw_headers)
            if not isinstance(loaded, dict) or not all(isinstance(v, str) for v in loaded.values()):
                raise ValueError("headers are not a JSON object of strings")
            headers = loaded
            "".join(headers).encode()  # lone surrogates from \\ud800 escapes cannot be stored or shown
            "".join(headers.values()).encode()
        except (ValueError, RecursionError) as exc:
            headers = {}
            faults.append(f"headers are not a JSON object of strings: {_short(exc)}")
    stamp = 0.0
    raw_stamp = found.get(b"t")
    if raw_stamp is not None:
        try:
            stamp = float(raw_stamp)
        except ValueError:
            faults.append(f"timestamp {_show(raw_stamp)} is not a number")
    if not faults:
        return Delivery(topic, partition, offset, found[b"v"], key, headers, stamp, attempt, first_failure)
    if missing or len(found) < len(flat) // 2 or any(name not in _FIELDS for name in found):
        value = b"\n".join(bytes(flat[i]) + b": " + bytes(flat[i + 1]) for i in range(0, len(flat) - 1, 2))
    else:
        value = found[b"v"]
    return Delivery(topic, partition, offset, value, key, headers, stamp, attempt, first_failure, "; ".join(faults))


def _show(raw: bytes) -> str:
    """A field name or value in a fault message: short, and printable whatever its bytes."""
    return repr(raw[:40].decode("utf-8", "backslashreplace")) + ("..." if len(raw) > 40 else "")


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 120 else text[:117] + "..."


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
    """Return the hash fields of a dead letter: the shared encoding, and the fields scripts and counts read.

    ``entry`` is the letter in :mod:`choreograph.core.dead_letter_codec`'s
    encoding; ``status`` (flipped in place by the RESUBMIT and PURGE scripts,
    so it wins over the entry's), ``topic``, ``group`` and ``reason`` are
    plain fields for those scripts and for counting without reading values.
    """
    return {
        "entry": codec.encode(letter),
        "topic": letter.topic,
        "group": letter.group,
        "reason": letter.reason,
        "status": letter.status,
    }


def _optional(raw: bytes) -> str | None:
    return raw[1:].decode() if raw else None


def decode_dead_letter(fields: Mapping[bytes, bytes]) -> DeadLetter:
    """Return the dead letter stored by :func:`encode_dead_letter`, or in the older one-field-per-attribute hash."""
    entry = fields.get(b"entry")
    if entry is None:
        return _decode_legacy_dead_letter(fields)
    letter, _ = codec.decode(entry)
    return dataclasses.replace(letter, status=fields[b"status"].decode())


def _decode_legacy_dead_letter(fields: Mapping[bytes, bytes]) -> DeadLetter:
    """Return a dead letter stored before the shared encoding: one hash field per attribute."""

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


def score_pairs(flat: Sequence[bytes]) -> list[tuple[bytes, float]]:
    """(member, score) pairs of a ``ZRANGE ... WITHSCORES`` reply as a script returns it: member, score, ..."""
    return [(flat[i], float(flat[i + 1])) for i in range(0, len(flat), 2)]
