"""Opening the NATS connection: credentials, TLS, and refusals reported with their cause, within a bound.

nats-py tells why a server refused (a TLS alert, "Authorization Violation")
only to its error callback and raises "no servers available", or, after a
failed TLS handshake, may not return at all. :func:`connect` collects what the
callback reports, stops as soon as a server refused, bounds the whole attempt,
and raises a ConfigurationError naming the cause and the option to fix
(see :func:`~choreograph.brokers.nats.translation.connect_error`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any

from nats.aio.client import Client

from choreograph.brokers.nats.config import NatsConfig
from choreograph.brokers.nats.translation import connect_error, refusal
from choreograph.core.errors import BrokerUnavailable, ConfigurationError


async def connect(config: NatsConfig) -> Client:
    """Return a client connected to one of ``config.servers``, with its credentials and TLS settings.

    The first connect fails fast (each server tried twice); once connected,
    the client reconnects without limit. Raises ConfigurationError for refused
    credentials or TLS (or an unreadable secret file), BrokerUnavailable when
    no server answers.
    """
    # credentials travel as options (a URL would need them encoded again), read from their files now
    options: dict[str, Any] = config.auth_options()
    if config.uses_tls:
        tls = config.tls_settings()
        options.update(tls=tls.context(), tls_handshake_first=config.tls_handshake_first)
        if tls.server_name is not None:
            options["tls_hostname"] = tls.server_name
    seen = _FirstErrors(config)
    options.update(
        servers=list(config.servers),
        connect_timeout=config.connect_timeout,
        max_reconnect_attempts=1,  # the first connect fails fast; unlimited once connected
        # Every subject is built from a validated prefix and token()-escaped names, so
        # nats-py's per-publish regex check (1-2% of the consumer's CPU) is redundant.
        skip_subject_validation=True,
        reconnect_time_wait=0.25,
        error_cb=seen.record,
        disconnected_cb=_noop,
        reconnected_cb=_noop,
        closed_cb=_noop,
    )
    nc = Client()
    # Each server is tried twice; nats-py may also stall after a failed TLS handshake, hence the bound.
    bound = (2 * config.connect_timeout + 0.25) * 2 * len(config.servers)
    try:
        await _bounded(nc.connect(**options), seen.refused, bound)
    except asyncio.CancelledError:  # a caller's deadline (App publishing): leave no half-open socket behind
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), config.connect_timeout)
        raise
    except Exception as exc:
        with contextlib.suppress(Exception):
            await nc.close()
        error = connect_error(exc, config, seen.errors)
        if isinstance(error, BrokerUnavailable) and config.uses_tls and not config.tls_handshake_first:
            # a server with handshake_first says nothing until the client starts TLS
            error = BrokerUnavailable(f"{error}; a server that waits for TLS first needs tls_handshake_first=true")
        raise error from exc
    seen.errors = None  # connected: later errors are the client's business (it reconnects)
    if config.uses_tls and not _encrypted(nc):
        await nc.close()  # the server offered no TLS: refuse rather than talk in the clear
        raise ConfigurationError(
            f"NATS server at {', '.join(config.servers)} does not use TLS, but this client requires it "
            "(tls options given); enable tls on the server, or remove the tls options"
        )
    return nc


class _FirstErrors:
    """The errors nats-py reports while connecting (it raises only NoServersError itself, if anything)."""

    def __init__(self, config: NatsConfig) -> None:
        self.errors: list[BaseException] | None = []
        self.refused = asyncio.Event()
        """Set once a server refused the TLS handshake or the credentials: trying on cannot help."""
        self._config = config

    async def record(self, exc: Exception) -> None:
        if self.errors is not None and len(self.errors) < 8:
            self.errors.append(exc)
            if refusal(exc, self._config) is not None:
                self.refused.set()


async def _bounded(connecting: Awaitable[None], refused: asyncio.Event, bound: float) -> None:
    """Await ``connecting`` for at most ``bound`` seconds, giving up as soon as ``refused`` is set.

    Raises what the connect raised, or TimeoutError; the connect is cancelled if it did not finish.
    """
    task = asyncio.ensure_future(connecting)
    waiter = asyncio.ensure_future(refused.wait())
    try:
        await asyncio.wait({task, waiter}, timeout=bound, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait({task})  # never raises; the cancelled connect is cleaned up by the caller
    if task.cancelled():
        if refused.is_set():
            raise ConnectionRefusedError("a NATS server refused the TLS handshake or the credentials")
        raise TimeoutError(f"no NATS server accepted the connection within {bound:g}s")
    task.result()


def _encrypted(nc: Client) -> bool:
    """Whether the connection's transport is TLS (nats-py upgrades only when the server asks for it)."""
    transport = getattr(nc, "_transport", None)
    writer = getattr(transport, "_io_writer", None)
    return writer is not None and writer.get_extra_info("ssl_object") is not None


async def _noop() -> None:
    return None
