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
MAX_SCHEMA_VERSION: Final = 2**31 - 1
"""Highest ``schemaversion`` accepted: event versions are small positive integers."""
_VERSION_DIGITS: Final = len(str(MAX_SCHEMA_VERSION))
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
    if version is not None and not (version.__class__ is int and 0 < version <= MAX_SCHEMA_VERSION):
        version = _version(version)
    contenttype = get("datacontenttype")
    if contenttype is not None and not isinstance(contenttype, str):
        raise DecodeError(f"CloudEvents attribute 'datacontenttype' must be a string, got {_show(contenttype)}")
    return Envelope(
        eid,
        source,
        etype,
        data,
        "1.0",
        time,
        subject,
        contenttype,
        dataschema,
        correlationid,
        causationid,
        partitionkey,
        traceparent,
        tracestate,
        version,
        {} if _KNOWN.issuperset(doc) else {k: doc[k] for k in doc.keys() - _KNOWN},  # extensions: usually none
    )


def _version(value: Any) -> int:
    """Return ``value`` as a schema version in 1..MAX_SCHEMA_VERSION, or raise DecodeError.

    Binary mode carries every attribute as a string: only ASCII digits are
    read (``str.isdigit`` also accepts superscripts and other scripts' digits,
    which ``int`` then refuses or reads), and only as many as the range needs,
    so a hostile header costs no big-number parsing.
    """
    if value.__class__ is str and 0 < len(value) <= _VERSION_DIGITS and value.isascii() and value.isdigit():
        value = int(value)
    if value.__class__ is not int:  # bool, float, a str subclass, any JSON value
        raise DecodeError(f"extension 'schemaversion' must be a positive integer, got {_show(value)}")
    if not 0 < value <= MAX_SCHEMA_VERSION:
        raise DecodeError(f"extension 'schemaversion' must be between 1 and {MAX_SCHEMA_VERSION}, got {value}")
    return int(value)


def _show(value: Any) -> str:
    """A short repr of an untrusted value for an error message."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _check(doc: Mapping[str, Any]) -> None:
    """Raise the DecodeError naming the first attribute of ``doc`` that is missing or of the wrong type.

    Returns if there is none (string values of a str subclass, say).
    """
    for name in h.REQUIRED_ATTRIBUTES:
        value = doc.get(name)
        if not isinstance(value, str) or not value:
            raise DecodeError(f"CloudEvents attribute {name!r} is missing or not a non-empty string")
    if doc[h.SPEC] != h.SPECVERSION:
        raise DecodeError(f"unsupported CloudEvents specversion {_show(doc[h.SPEC])}; expected '1.0'")
    for name in _OPTIONAL_STR:
        value = doc.get(name)
        if value is not None and not isinstance(value, str):
            raise DecodeError(f"CloudEvents attribute {name!r} must be a string, got {_show(value)}")


def decode(raw: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> Envelope:
    """Decode structured-mode CloudEvents JSON. Raises DecodeError on any bad input, never another exception."""
    try:
        return _decode(raw, max_size)
    except DecodeError:
        raise
    except Exception as exc:  # a safety net: the checks above are meant to leave nothing for it
        raise _unexpected(exc) from exc


def _unexpected(exc: Exception) -> DecodeError:
    return DecodeError(f"message could not be decoded: {type(exc).__name__}: {_show(str(exc))}")


def _decode(raw: bytes, max_size: int) -> Envelope:
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise DecodeError(f"message is {type(raw).__name__}, expected bytes")
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


def from_binary(headers: Mapping[str, str], body: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> Envelope:
    """Rebuild an envelope from binary-mode headers and body. Raises DecodeError on any bad input.

    Header names and values must be strings (a backend decodes its native
    bytes first); ``max_size`` bounds the body and the headers together.
    Never raises another exception.
    """
    try:
        return _from_binary(headers, body, max_size)
    except DecodeError:
        raise
    except Exception as exc:  # a safety net, as in decode
        raise _unexpected(exc) from exc


def _from_binary(headers: Mapping[str, str], body: bytes, max_size: int) -> Envelope:
    if not isinstance(body, bytes | bytearray | memoryview):
        raise DecodeError(f"binary-mode body is {type(body).__name__}, expected bytes")
    size = len(body)
    doc: dict[str, Any] = {}
    for name, value in headers.items():
        if not (isinstance(name, str) and isinstance(value, str)):
            raise DecodeError(f"header {_show(name)} is not a string name with a string value: {_show(value)}")
        size += len(name) + len(value)
        if name.startswith(h.BINARY_PREFIX):
            attr = name[len(h.BINARY_PREFIX) :]
            if attr in _KNOWN:
                doc[attr] = value
            else:
                try:
                    doc[attr] = orjson.loads(value)
                except orjson.JSONDecodeError:
                    doc[attr] = value  # an extension that is a plain string, not JSON
    if size > max_size:
        raise DecodeError(f"message is {size} bytes with its headers, over the {max_size}-byte limit")
    doc[h.DATACONTENTTYPE] = headers.get(h.CONTENT_TYPE_HEADER, h.CONTENT_TYPE_JSON)
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"binary-mode body is not valid JSON: {exc}") from exc
    return _build(doc, data)
