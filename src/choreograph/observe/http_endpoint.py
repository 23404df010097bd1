"""The tiny HTTP server behind ``/metrics`` and the probes: one request per connection, answered by a route.

Enough HTTP/1.1 for Prometheus and Kubernetes: ``GET`` and ``HEAD``, the
query string ignored, ``Connection: close``. A request that does not finish
within its timeout, or a client that goes away, is dropped quietly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Final

logger = logging.getLogger("choreograph.http")

TEXT: Final = "text/plain; charset=utf-8"
REASONS: Final = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}

Route = Callable[[str], Awaitable[tuple[int, str, bytes]]]
"""Answers a path with (status, content type, body)."""


async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, route: Route, *, timeout: float) -> None:
    """Read one request from ``reader``, answer it through ``route`` on ``writer``, and close the connection."""
    try:
        async with asyncio.timeout(timeout):
            request = (await reader.readline()).decode("latin-1").split()
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            method = request[0] if request else ""
            if len(request) >= 2 and method in ("GET", "HEAD"):
                status, content_type, body = await route(request[1].split("?", 1)[0])
            else:
                status, content_type, body = 405, TEXT, b"GET or HEAD only\n"
            head = (
                f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode()
            writer.write(head if method == "HEAD" else head + body)
            await writer.drain()
    except (TimeoutError, ConnectionError) as exc:
        logger.debug("HTTP request aborted: %s", exc)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
