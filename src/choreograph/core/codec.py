"""Encode envelopes as CloudEvents JSON and decode them back.

Structured mode (the default wire format) puts the whole envelope in one JSON
object. Binary mode puts attributes in transport headers (``ce_`` prefix) and
the data alone in the body, for brokers that carry headers.

Decoding never raises anything but :class:`DecodeError` on bad input: a
consumer must survive any bytes it finds on a topic.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson

from choreograph.core import headers as h
from choreograph.core.envelope import Envelope
from choreograph.core.errors import DecodeError, EncodeError

DEFAULT_MAX_SIZE: Final = 1024 * 1024
"""Largest encoded envelope accepted, in bytes (1 MiB), unless configured."""

_KNOWN: Final = frozenset(
    {
        h.ID,
        h.SOURCE,
        h.TYPE,
        h.SPEC,
        h.TIME,
        h.SUBJECT,
        h.DATACONTENTTYPE,
        h.DATASCHEMA,
        h.DATA,
        h.CORRELATION_ID,
        h.CAUSATION_ID,
        h.PARTITION_KEY,
        h.TRACEPARENT,
        h.TRACESTATE,
        h.SCHEMA_VERSION,
    }
)
_STR_OR_NONE: Final = frozenset({str, type(None)})
_OPTIONAL_STR: Final = (
    h.TIME,
    h.SUBJECT,
    h.DATASCHEMA,
    h.CORRELATION_ID,
    h.CAUSATION_ID,
    h.PARTITION_KEY,
    h.TRACEPARENT,
    h.TRACESTATE,
)


def _attributes(envelope: Envelope) -> dict[str, Any]:
    out: dict[str, Any] = {
        h.SPEC: envelope.specversion,
        h.ID: envelope.id,
        h.SOURCE: envelope.source,
        h.TYPE: envelope.type,
    }
    for name in (*_OPTIONAL_STR, h.DATACONTENTTYPE):
        value = getattr(envelope, name)
        if value is not None:
            out[name] = value
    if envelope.schemaversion is not None:
        out[h.SCHEMA_VERSION] = envelope.schemaversion
    if envelope.extensions:
        out.update(envelope.extensions)
    return out


def encode(envelope: Envelope, *, max_size: int = DEFAULT_MAX_SIZE) -> bytes:
    """Encode ``envelope`` as structured-mode CloudEvents JSON.

    Raises EncodeError if the result exceeds ``max_size`` bytes or the data is
    not JSON-serializable.
    """
    doc = _attributes(envelope)
    if envelope.data is not None:
        doc[h.DATA] = envelope.data
    try:
        # orjson returns bytes backed by a ~4 KiB allocation whatever the length;
        # copying them (about 0.1 us) keeps records held in queues and logs at
        # their real size instead of ~9x it.
        raw = bytes(memoryview(orjson.dumps(doc)))
    except TypeError as exc:
        raise EncodeError(f"event {envelope.type} {envelope.id}: data is not JSON: {exc}") from exc
    if len(raw) > max_size:
        raise EncodeError(
            f"event {envelope.type} {envelope.id} is {len(raw)} bytes, over the {max_size}-byte "
            "limit; send a reference to the payload instead, or raise max_size"
        )
    return raw


def _build(doc: Mapping[str, Any], data: Any) -> Envelope:
    # Runs once per consumed event, so it is written flat: literal names (the h.* constants; the
    # round-trip tests cover every attribute), no inner loops or comprehensions.
    get: Callable[[str], Any] = doc.get
    eid, source, etype = get("id"), get("source"), get("type")
    time, subject, dataschema = get("time"), get("subject"), get("dataschema")
    correlationid, causationid, partitionkey = get("correlationid"), get("causationid"), get("partitionkey")
    traceparent, tracestate = get("traceparent"), get("tracestate")
    # One combined test for the common case (exact str values); _check looks closer otherwise.
    if not (
        eid.__class__ is str
        and eid
        and source.__class__ is str
        and source
        and etype.__class__ is str
        and etype
        and get("specversion") == "1.0"
        and _STR_OR_NONE.issuperset(
            map(type, (time, subject, dataschema, correlationid, causationid, partitionkey, traceparent, tracestate))
        )
    ):
        _check(doc)
    version = get("schemaversion")
    if version is not None and version.__class__ is not int:
        if isinstance(version, str) and version.isdigit():
            version = int(version)  # binary mode carries every attribute as a string
        elif not isinstance(version, int) or isinstance(version, bool):
            raise DecodeError(f"extension 'schemaversion' must be an integer, got {version!r}")
    return Envelope(
        eid,
        source,
        etype,
        data,
        "1.0",
        time,
        subject,
        get("datacontenttype"),
        dataschema,
        correlationid,
        causationid,
        partitionkey,
        traceparent,
        tracestate,
        version,
        {} if _KNOWN.issuperset(doc) else {k: doc[k] for k in doc.keys() - _KNOWN},  # extensions: usually none
    )


def _check(doc: Mapping[str, Any]) -> None:
    """Raise the DecodeError naming the first attribute of ``doc`` that is missing or of the wrong type.

    Returns if there is none (string values of a str subclass, say).
    """
    for name in h.REQUIRED_ATTRIBUTES:
        value = doc.get(name)
        if not isinstance(value, str) or not value:
            raise DecodeError(f"CloudEvents attribute {name!r} is missing or not a non-empty string")
    if doc[h.SPEC] != h.SPECVERSION:
        raise DecodeError(f"unsupported CloudEvents specversion {doc[h.SPEC]!r}; expected '1.0'")
    for name in _OPTIONAL_STR:
        value = doc.get(name)
        if value is not None and not isinstance(value, str):
            raise DecodeError(f"CloudEvents attribute {name!r} must be a string, got {value!r}")


def decode(raw: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> Envelope:
    """Decode structured-mode CloudEvents JSON. Raises DecodeError on any bad input."""
    if len(raw) > max_size:
        raise DecodeError(f"message is {len(raw)} bytes, over the {max_size}-byte limit")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"message is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise DecodeError(f"message is JSON {type(doc).__name__}, expected a CloudEvents object")
    return _build(doc, doc.get(h.DATA))


def to_binary(envelope: Envelope) -> tuple[dict[str, str], bytes]:
    """Split ``envelope`` into binary-mode headers (``ce_*``) and a JSON body."""
    headers = {
        f"{h.BINARY_PREFIX}{k}": v if isinstance(v, str) else orjson.dumps(v).decode()
        for k, v in _attributes(envelope).items()
        if k != h.DATACONTENTTYPE
    }
    headers[h.CONTENT_TYPE_HEADER] = envelope.datacontenttype or h.CONTENT_TYPE_JSON
    return headers, orjson.dumps(envelope.data)


def from_binary(headers: Mapping[str, str], body: bytes) -> Envelope:
    """Rebuild an envelope from binary-mode headers and body. Raises DecodeError."""
    doc: dict[str, Any] = {}
    for name, value in headers.items():
        if name.startswith(h.BINARY_PREFIX):
            attr = name[len(h.BINARY_PREFIX) :]
            if attr in _KNOWN:
                doc[attr] = value
            else:
                try:
                    doc[attr] = orjson.loads(value)
                except orjson.JSONDecodeError:
                    doc[attr] = value
    doc[h.DATACONTENTTYPE] = headers.get(h.CONTENT_TYPE_HEADER, h.CONTENT_TYPE_JSON)
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"binary-mode body is not valid JSON: {exc}") from exc
    return _build(doc, data)
