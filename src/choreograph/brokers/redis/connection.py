"""Connections that pack commands in C when hiredis is installed.

redis-py's asyncio connection packs every command in Python, concatenating bytes per argument; a settle or
publish of a few hundred records is one command of a thousand arguments, so packing took about a fifth of
the Redis backend's CPU. hiredis (the ``redis`` extra installs it) has a C packer producing the same bytes.
Without hiredis the stock packer is used unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import DataError

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
    """A TLS connection whose commands are packed by hiredis."""

    def pack_command(self, *args: Any) -> list[bytes]:
        return _pack(args)


def connection_class(url: str) -> type[aioredis.Connection] | None:
    """The connection class for ``url``, or None to keep redis-py's choice (no hiredis, or a unix socket)."""
    if _hiredis_pack is None:
        return None
    if url.startswith("rediss://"):
        return FastPackSSLConnection
    if url.startswith("redis://"):
        return FastPackConnection
    return None
