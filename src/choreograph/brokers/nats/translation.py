"""Translation of nats-py errors into choreograph's BrokerError tree, at the broker boundary.

============================================  =================================
nats-py                                       choreograph
============================================  =================================
connection closed / draining                  BrokerClosed
no servers, timeouts, no responders,          BrokerUnavailable (ConnectionError)
stale / reconnecting connection,
JetStream 503 (no quorum, no leader)
stream not found                              UnknownTopic (LookupError)
any other JetStream API error                 BrokerError
OSError while connecting                      BrokerUnavailable
============================================  =================================
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Final

import nats.errors
import nats.js.errors

from choreograph.brokers.nats.config import NatsConfig
from choreograph.core.credentials import explain_tls_failure
from choreograph.core.error_table import ErrorRule, ErrorTable
from choreograph.core.error_table import translate as apply_table
from choreograph.core.errors import (
    BrokerClosed,
    BrokerError,
    BrokerUnavailable,
    ChoreographError,
    ConfigurationError,
    UnknownTopic,
)
from choreograph.core.redaction import redact_text

_UNAVAILABLE = (
    nats.errors.NoServersError,
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.StaleConnectionError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.OutboundBufferLimitError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,
    asyncio.TimeoutError,
    OSError,
)
_MESSAGE: Final = "NATS {what} failed: {name}: {exc}"


def _stream_not_found(exc: BaseException) -> bool:
    return getattr(exc, "err_code", None) == 10059


def _unavailable_status(exc: BaseException) -> bool:
    return getattr(exc, "code", None) == 503  # no quorum, no leader


ERRORS: Final[ErrorTable] = (
    ErrorRule((nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError), BrokerClosed, _MESSAGE),
    ErrorRule(_UNAVAILABLE, BrokerUnavailable, _MESSAGE),
    ErrorRule(nats.js.errors.NotFoundError, UnknownTopic, _MESSAGE, when=_stream_not_found),
    ErrorRule(nats.js.errors.APIError, BrokerUnavailable, _MESSAGE, when=_unavailable_status),
    ErrorRule(BaseException, BrokerError, _MESSAGE),
)
"""nats-py exception -> choreograph error, first match wins (the table in this module's docstring)."""


def translate(exc: BaseException, action: str) -> BrokerError:
    """Return the choreograph error for a nats-py failure of ``action`` (per :data:`ERRORS`)."""
    if isinstance(exc, BrokerError):
        return exc
    error = apply_table(exc, ERRORS, action)
    assert isinstance(error, BrokerError)  # the last rule matches everything; every rule makes a BrokerError
    return error


@contextmanager
def translated(action: str) -> Iterator[None]:
    """Re-raise nats-py errors raised inside the block as BrokerError subclasses."""
    try:
        yield
    except (TimeoutError, nats.errors.Error, OSError) as exc:
        raise translate(exc, action) from exc


STORAGE_LIMITS: Final = frozenset({10047, 10077, 10078, 10079})
"""JetStream error codes of a write the server refused for good: insufficient resources, bytes, messages
(per subject) over the stream's limits. Sent with status 503 but not an outage: retrying does not help."""


def connect_error(
    exc: BaseException, config: NatsConfig, reported: Sequence[BaseException] | None = ()
) -> ChoreographError:
    """Return the error for a failed first connect: a refused TLS handshake or credentials name their cause.

    ``reported``: what nats-py passed to its error callback meanwhile (it
    raises only "no servers available", or nothing at all after a failed
    handshake). Refused TLS or credentials are ConfigurationErrors (retrying
    cannot help; the message says which option to fix); anything else is
    translated as usual (BrokerUnavailable...).
    """
    for candidate in (*(reported or ()), exc):
        refused = refusal(candidate, config)
        if refused is not None:
            return refused
    certificate = _certificate_missing(reported, config)
    if certificate is not None:
        return certificate
    return translate(exc, f"connect to {redact_text(', '.join(config.servers))}")


def _certificate_missing(reported: Sequence[BaseException] | None, config: NatsConfig) -> ConfigurationError | None:
    """The refusal of a TLS 1.3 server that wants a client certificate we did not send, when its alert was lost.

    Under TLS 1.3 the server checks the client certificate after the
    handshake completed on the client's side; it sends its "certificate
    required" alert and closes. When the client's first write (CONNECT)
    meets the closed socket first, the kernel answers with a reset that
    discards the unread alert: nats-py then reports only "connection reset"
    or "broken pipe", never the alert (about one connect in 40 here). So:
    TLS on, no ``tls_cert`` configured, and every attempt ended that way, is
    that refusal, as Redis reports it (``brokers/redis/connection.py``).
    """
    if not config.uses_tls or config.tls_cert is not None or not reported:
        return None
    if not all(isinstance(error, (ConnectionResetError, BrokenPipeError)) for error in reported):
        return None
    return ConfigurationError(
        f"TLS handshake with {redact_text(', '.join(config.servers))} failed: the server requires a client "
        "certificate (mutual TLS); set tls_cert and tls_key (it closed every connection right after the handshake, "
        "as a server that requires a certificate we did not send does)"
    )


def refusal(exc: BaseException, config: NatsConfig) -> ConfigurationError | None:
    """The error to raise if ``exc`` says a server refused the TLS handshake or the credentials, else None."""
    servers = redact_text(", ".join(config.servers))
    tls = explain_tls_failure(exc, servers)
    if tls is not None:
        return ConfigurationError(tls)
    text = str(exc).lower()
    if "authorization violation" in text or "authentication" in text:
        return ConfigurationError(
            f"NATS server at {servers} refused the credentials ({_auth_method(config)}): "
            f"{redact_text(str(exc))}; check user/password, token, nkey_seed or credentials_file"
        )
    return None


def _auth_method(config: NatsConfig) -> str:
    if config.user is not None:
        return f"user {config.user!r} with a password"
    if any(v is not None for v in (config.token, config.token_file, config.token_env)):
        return "token"
    if any(v is not None for v in (config.nkey_seed, config.nkey_seed_file, config.nkey_seed_env)):
        return "NKey"
    if config.credentials_file is not None:
        return f"credentials_file {config.credentials_file!r}"
    return "no credentials given"
