"""Batched direct gets: read many stream messages in one request (NATS server 2.11+).

``$JS.API.DIRECT.GET.<stream>`` answers a batch request with one message per
hit and a final ``204 EOB`` status (``404`` when nothing matched). The inbox
lookup of a whole batch and a dead-letter listing are each one such request
instead of one round trip per key. Streams read this way have
``allow_direct`` set.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from nats.aio.client import Client

from choreograph.core.errors import BrokerError, BrokerUnavailable

MULTI_LAST_CHUNK: Final = 256
"""Subjects per multi-last request (the server caps one request's subjects)."""
KV_OPERATION: Final = "KV-Operation"


@dataclass(frozen=True, slots=True)
class Stored:
    """One message read directly from a stream."""

    subject: str
    seq: int
    data: bytes
    headers: Mapping[str, str]
    timestamp: float

    @property
    def deleted(self) -> bool:
        """True for a KV delete or purge marker."""
        return self.headers.get(KV_OPERATION) in ("DEL", "PURGE")


def _timestamp(text: str | None) -> float:
    if not text:
        return 0.0
    # RFC 3339 with nanoseconds; Python parses at most microseconds.
    head, dot, frac = text.rstrip("Z").partition(".")
    micros = (frac + "000000")[:6] if dot else "000000"
    return datetime.fromisoformat(f"{head}.{micros}+00:00").timestamp()


async def _batch(nc: Client, stream: str, request: dict[str, Any], timeout: float) -> list[Stored]:
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    out: list[Stored] = []
    try:
        await nc.publish(f"$JS.API.DIRECT.GET.{stream}", json.dumps(request).encode(), reply=inbox)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                msg = await sub.next_msg(timeout=max(0.001, deadline - loop.time()))
            except TimeoutError:
                raise BrokerUnavailable(f"NATS direct get on {stream} timed out after {timeout}s") from None
            headers = msg.headers or {}
            status = headers.get("Status")
            if status is not None:
                if status in ("204", "404"):
                    return out
                raise BrokerError(f"NATS direct get on {stream} failed: {status} {headers.get('Description', '')}")
            out.append(
                Stored(
                    subject=headers.get("Nats-Subject", ""),
                    seq=int(headers.get("Nats-Sequence", "0")),
                    data=msg.data,
                    headers=headers,
                    timestamp=_timestamp(headers.get("Nats-Time-Stamp")),
                )
            )
    finally:
        await sub.unsubscribe()


async def last_values(nc: Client, stream: str, subjects: Sequence[str], timeout: float) -> dict[str, Stored]:
    """Return the last message of each subject (wildcards allowed) that has one, by subject."""
    chunks = [subjects[i : i + MULTI_LAST_CHUNK] for i in range(0, len(subjects), MULTI_LAST_CHUNK)]
    results = await asyncio.gather(
        *(_batch(nc, stream, {"multi_last": list(chunk)}, timeout) for chunk in chunks if chunk)
    )
    return {stored.subject: stored for result in results for stored in result}


async def scan(
    nc: Client, stream: str, subject: str, *, start_seq: int = 1, limit: int, timeout: float
) -> list[Stored]:
    """Return up to ``limit`` messages on ``subject`` (wildcards allowed) from ``start_seq``, in order."""
    return await _batch(nc, stream, {"seq": max(1, start_seq), "next_by_subj": subject, "batch": limit}, timeout)


async def scan_from_time(
    nc: Client, stream: str, subject: str, *, start_time: float, limit: int, timeout: float
) -> list[Stored]:
    """Return up to ``limit`` messages on ``subject`` stored at or after ``start_time`` (epoch seconds)."""
    when = datetime.fromtimestamp(start_time).astimezone().isoformat()
    return await _batch(nc, stream, {"start_time": when, "next_by_subj": subject, "batch": limit}, timeout)
