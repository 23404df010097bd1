"""Translating aiokafka errors and records into choreograph's: :func:`translated`, :func:`to_delivery`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, Final

from aiokafka import errors as kafka_errors

from choreograph.core.broker import Delivery
from choreograph.core.credentials import explain_tls_failure
from choreograph.core.error_table import ErrorRule, ErrorTable, catches, translate
from choreograph.core.errors import BrokerError, BrokerUnavailable, ConfigurationError

RESUBMIT_GROUP_HEADER: Final = "choreograph-resubmitted-for"
"""Header of a resubmitted dead letter: only this group handles it, every other group skips it."""

RESUBMIT_OFFSET_HEADER: Final = "choreograph-resubmitted-offset"
"""Header of a resubmitted dead letter: the offset of the original record, reported as the delivery's offset."""


_REFUSED_CREDENTIALS: Final = (
    kafka_errors.SaslAuthenticationFailed,
    kafka_errors.AuthenticationFailedError,
    kafka_errors.AuthenticationMethodNotSupported,
    kafka_errors.UnsupportedSaslMechanismError,
    kafka_errors.IllegalSaslStateError,
)


def _tls_refusal(exc: BaseException) -> ConfigurationError | None:
    tls = explain_tls_failure(exc, "kafka")
    return None if tls is None else ConfigurationError(tls)


ERRORS: Final[ErrorTable] = (
    ErrorRule(  # retrying cannot help: say which options to fix
        _REFUSED_CREDENTIALS,
        ConfigurationError,
        "kafka refused the SASL authentication while trying to {what}: {name}: {exc}; "
        "check sasl_mechanism, sasl_username and the password (sasl_password_file or sasl_password_env)",
    ),
    ErrorRule(
        (kafka_errors.KafkaConnectionError, kafka_errors.NodeNotReadyError, OSError),
        BrokerUnavailable,
        "kafka unreachable while trying to {what}: {exc}",
        refine=_tls_refusal,  # a refused TLS handshake is a ConfigurationError naming the option to fix
    ),
    ErrorRule(kafka_errors.KafkaTimeoutError, BrokerUnavailable, "kafka timed out while trying to {what}: {exc}"),
    ErrorRule(kafka_errors.KafkaError, BrokerError, "kafka failed to {what}: {exc!r}"),
)
"""aiokafka exception -> choreograph error, first match wins (see :mod:`choreograph.core.error_table`)."""

_CAUGHT: Final = catches(ERRORS)


@contextlib.asynccontextmanager
async def translated(what: str) -> AsyncIterator[None]:
    """Translate aiokafka errors raised inside the block into choreograph BrokerErrors (per :data:`ERRORS`)."""
    try:
        yield
    except _CAUGHT as exc:
        error = translate(exc, ERRORS, what)
        assert error is not None  # _CAUGHT is exactly what ERRORS names
        raise error from exc


def to_delivery(
    message: Any, *, attempt: int = 1, first_failure: float | None = None, log_offset: bool = False
) -> Delivery:
    """Return the delivery of an aiokafka ConsumerRecord; never raises.

    A resubmitted dead letter reports its original record's offset to its
    group (``log_offset`` false), but its own position in the log to a
    reader of the log (``log_offset`` true): a reader pages on by offsets.

    A record another client wrote that we cannot translate — a key or header
    value that is not UTF-8, a resubmitted-offset header that is not a
    number — is a delivery with ``fault`` saying what is wrong, its key and
    headers as far as they could be read (undecodable bytes as ``\\xNN``).
    """
    try:
        raw = dict(message.headers or ())
        headers = {k: v.decode() for k, v in raw.items() if k not in _RESUBMIT_HEADERS}
        original = None if log_offset else raw.get(RESUBMIT_OFFSET_HEADER)
        return Delivery(
            topic=message.topic,
            partition=message.partition,
            offset=message.offset if original is None else int(original),
            value=message.value if message.value is not None else b"",
            key=None if message.key is None else message.key.decode(),
            headers=headers,
            timestamp=message.timestamp / 1000,
            attempt=attempt,
            first_failure=first_failure,
        )
    except (ValueError, TypeError, AttributeError):  # UnicodeDecodeError is a ValueError
        return _faulty_delivery(message, attempt, first_failure, log_offset)


_RESUBMIT_HEADERS: Final = (RESUBMIT_GROUP_HEADER, RESUBMIT_OFFSET_HEADER)


def _text(raw: object) -> tuple[str, bool]:
    """(text, whether ``raw`` was proper UTF-8 bytes or text) for a key or header value read from the wire."""
    if raw is None:  # a null header value (none of ours): read as empty
        return "", True
    if isinstance(raw, str):
        return raw.encode("utf-8", "backslashreplace").decode(), True
    if isinstance(raw, bytes | bytearray | memoryview):
        data = bytes(raw)
        try:
            return data.decode(), True
        except UnicodeDecodeError:
            return data.decode("utf-8", "backslashreplace"), False
    return repr(raw), False


def _faulty_delivery(message: Any, attempt: int, first_failure: float | None, log_offset: bool) -> Delivery:
    """The delivery of a record :func:`to_delivery` cannot translate: best-effort fields and a fault."""
    faults: list[str] = []
    headers: dict[str, str] = {}
    original: str | None = None
    try:
        pairs = list(message.headers or ())
    except TypeError:
        pairs, faults = [], ["headers are not a list of pairs"]
    for pair in pairs:
        try:
            name, raw = pair
        except (TypeError, ValueError):
            faults.append("a header is not a (name, value) pair")
            continue
        name, _ = _text(name)
        value, ok = _text(raw)
        if not ok:
            faults.append(f"header {name!r} is not UTF-8")
        if name == RESUBMIT_OFFSET_HEADER:
            original = None if log_offset else value
        elif name != RESUBMIT_GROUP_HEADER:
            headers[name] = value
    key: str | None = None
    if message.key is not None:
        key, ok = _text(message.key)
        if not ok:
            faults.append("key is not UTF-8")
    offset = message.offset if isinstance(message.offset, int) else -1
    if original is not None:
        if original.isascii() and original.isdigit():
            offset = int(original)
        else:
            faults.append(f"header {RESUBMIT_OFFSET_HEADER} is not an offset: {original[:40]!r}")
    payload = message.value
    body = bytes(payload) if isinstance(payload, bytes | bytearray | memoryview) else b""
    stamp = message.timestamp / 1000 if isinstance(message.timestamp, int | float) else 0.0
    return Delivery(
        topic=str(message.topic),
        partition=message.partition if isinstance(message.partition, int) else -1,
        offset=offset,
        value=body,
        key=key,
        headers=headers,
        timestamp=stamp,
        attempt=attempt,
        first_failure=first_failure,
        fault="; ".join(faults) or None,
    )
