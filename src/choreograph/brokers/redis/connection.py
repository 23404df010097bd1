"""Connections that pack commands in C when hiredis is installed.

redis-py's asyncio connection packs every command in Python, concatenating bytes per argument; a settle or
publish of a few hundred records is one command of a thousand arguments, so packing took about a fifth of
the Redis backend's CPU. hiredis (the ``redis`` extra installs it) has a C packer producing the same bytes.
Without hiredis the stock packer is used unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, DataError
from redis.exceptions import ConnectionError as RedisConnectionError

from choreograph.core.credentials import explain_tls_failure, resolve_secret
from choreograph.core.errors import ConfigurationError

from .config import RedisConfig, check_url_and_config

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - hiredis is part of the redis extra
    _hiredis_pack = None


def _pack(args: tuple[Any, ...]) -> list[bytes]:
    assert _hiredis_pack is not None
    head = args[0]
    # as redis-py does: a command name with spaces ("CLIENT SETNAME") goes out as separate words
    if isinstance(head, str):
        args = (*head.encode().split(), *args[1:])
    elif b" " in head:
        args = (*head.split(), *args[1:])
    try:
        return [_hiredis_pack(args)]
    except TypeError as exc:
        raise DataError(f"cannot send this argument to Redis: {exc}") from exc


class FastPackConnection(aioredis.Connection):
    """A TCP connection whose commands are packed by hiredis."""

    def pack_command(self, *args: Any) -> list[bytes]:
        return _pack(args)


class FastPackSSLConnection(aioredis.SSLConnection):
    """A TLS connection whose commands are packed by hiredis (when installed), and that names a likely mTLS refusal.

    With TLS 1.3 a server that requires a client certificate refuses it after
    the handshake; its alert often loses the race with the connection's reset,
    so the client sees only "connection reset by peer" on its first command.
    Without a client certificate configured, that first-command reset is
    reported as the likely refusal it is.
    """

    def pack_command(self, *args: Any) -> list[bytes]:
        if _hiredis_pack is None:
            return super().pack_command(*args)
        return _pack(args)

    async def on_connect_check_health(self, check_health: bool = True) -> None:
        try:
            await super().on_connect_check_health(check_health=check_health)
        except RedisConnectionError as exc:
            certificate = getattr(getattr(self, "ssl_context", None), "certfile", None)
            if certificate is None and ("reset by peer" in str(exc).lower() or "closed by server" in str(exc).lower()):
                raise RedisConnectionError(f"{exc} {_RESET_AFTER_HANDSHAKE}") from exc
            raise


_RESET_AFTER_HANDSHAKE: Final = "(the server closed the TLS connection right after the handshake)"


def connection_class(url: str) -> type[aioredis.Connection] | None:
    """The connection class for ``url``, or None to keep redis-py's choice (no hiredis, or a unix socket)."""
    if url.startswith("rediss://"):
        return FastPackSSLConnection
    if _hiredis_pack is None:
        return None
    if url.startswith("redis://"):
        return FastPackConnection
    return None


def client_options(url: str, config: RedisConfig) -> dict[str, Any]:
    """Keyword arguments of ``Redis.from_url`` for authentication and TLS, the password read from its file or variable.

    For the broker's asyncio client and the keepalive's thread client alike.
    Raises ConfigurationError for tls options without ``rediss://``, or a
    password file or variable that cannot be read.
    """
    check_url_and_config(url, config)
    options: dict[str, Any] = {}
    if config.username is not None:
        options["username"] = config.username
    password = resolve_secret("password", config.password, config.password_file, config.password_env)
    if password is not None:
        options["password"] = password
    if url.startswith("rediss://"):
        tls = config.tls_settings()
        options.update(
            ssl_ca_certs=tls.ca,
            ssl_certfile=tls.cert,
            ssl_keyfile=tls.key,
            ssl_cert_reqs=tls.verify,
            ssl_check_hostname=tls.verify == "required",
        )
    return options


def refusal(exc: BaseException) -> ConfigurationError | None:
    """The error to raise if ``exc`` says the server refused our credentials, ACL or TLS handshake, else None.

    Such failures are ConfigurationErrors (retrying cannot help) whose message
    names the cause and the option to fix; the address is the one redis-py names.
    """
    text = str(exc)
    tls = explain_tls_failure(exc, _address(text))
    if tls is not None:
        return ConfigurationError(tls)
    lowered = text.lower()
    if _RESET_AFTER_HANDSHAKE in text:
        return ConfigurationError(
            f"TLS handshake with {_address(text)} failed: the server closed the connection right after the "
            "handshake, as a server that requires a client certificate (mutual TLS) does; set tls_cert and tls_key"
        )
    if isinstance(exc, AuthenticationError) or "wrongpass" in lowered or "invalid username-password" in lowered:
        return ConfigurationError(
            f"redis refused the credentials: {text}; check the user (URL or username=) and the password "
            "(URL, password_file= or password_env=)"
        )
    if lowered.startswith("noauth") or "authentication required" in lowered:
        return ConfigurationError(
            f"redis requires authentication: {text}; give a password (password_file= or password_env=)"
        )
    return None


def _address(text: str) -> str:
    """``host:port`` from a redis-py message ("... connecting to host:port." or "... reading from host:port :")."""
    for marker in ("connecting to ", "reading from "):
        _, found, rest = text.partition(marker)
        if found and rest.split():
            return f"redis at {rest.split()[0].rstrip('.:')}"
    return "the redis server"
