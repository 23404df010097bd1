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
from collections.abc import Iterator
from contextlib import contextmanager

import nats.errors
import nats.js.errors

from choreograph.core.errors import BrokerClosed, BrokerError, BrokerUnavailable, UnknownTopic

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


def translate(exc: BaseException, action: str) -> BrokerError:
    """Return the choreograph error for a nats-py failure of ``action``."""
    if isinstance(exc, BrokerError):
        return exc
    message = f"NATS {action} failed: {type(exc).__name__}: {exc}"
    if isinstance(exc, nats.errors.ConnectionClosedError | nats.errors.ConnectionDrainingError):
        return BrokerClosed(message)
    if isinstance(exc, _UNAVAILABLE):
        return BrokerUnavailable(message)
    if isinstance(exc, nats.js.errors.NotFoundError) and exc.err_code == 10059:  # stream not found
        return UnknownTopic(message)
    if isinstance(exc, nats.js.errors.APIError) and exc.code == 503:
        return BrokerUnavailable(message)
    return BrokerError(message)


@contextmanager
def translated(action: str) -> Iterator[None]:
    """Re-raise nats-py errors raised inside the block as BrokerError subclasses."""
    try:
        yield
    except (TimeoutError, nats.errors.Error, OSError) as exc:
        raise translate(exc, action) from exc
