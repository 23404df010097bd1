"""Pieces shared by the peer benchmarks (``bench/*_bench.py`` run against a broker server)."""

from __future__ import annotations

import asyncio
import socket
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.calibration import peak_rss_mb
from choreograph import Envelope, Event, Record, encode


def free_port() -> int:
    """Return a TCP port on loopback that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


REPEAT = 5
"""Interleaved runs of each system per bench (1 with ``--quick``); records carry the medians."""


async def interleaved(runs: dict[str, Callable[[], Awaitable[float | None]]], repeat: int) -> dict[str, list[float]]:
    """Run every system once per round, ``repeat`` rounds; return each one's events/s, in run order.

    Interleaving spreads the shared machine's slow spells over all systems instead of one. A run
    returning None (an optional peer not installed) is left out.
    """
    samples: dict[str, list[float]] = {}
    for round_ in range(repeat):
        for name, run in runs.items():
            value = await run()
            if value is None:
                continue
            samples.setdefault(name, []).append(value)
            print(f"{name} (round {round_ + 1}/{repeat}): {value:,.0f} events/s", file=sys.stderr, flush=True)
    return samples


def end_to_end_record(
    backend: str, ours: list[float], reference: str, theirs: list[float], **extra: Any
) -> dict[str, Any]:
    """One result record: choreograph end to end against ``reference``, medians of interleaved runs."""
    mine, other = statistics.median(ours), statistics.median(theirs)
    return {
        "backend": backend,
        "workload": "end-to-end",
        "events_per_s": round(mine),
        "p50_ms": None,
        "p99_ms": None,
        "peak_rss_mb": peak_rss_mb(),
        "reference": reference,
        "reference_events_per_s": round(other),
        "ratio": round(mine / other, 3),
        "runs": len(ours),
        "samples": [round(v) for v in ours],
        "reference_samples": [round(v) for v in theirs],
        **extra,
    }


class Tick(Event, type="bench.tick"):
    """The event the Redis and Kafka benches move: about a 100-byte payload."""

    n: int
    customer: str
    note: str


def tick_events(n: int) -> list[tuple[Tick, str]]:
    """``n`` (event, key) pairs over 1,000 keys."""
    return [(Tick(n=i, customer=f"customer-{i % 1000}", note="x" * 64), f"order-{i % 1000}") for i in range(n)]


def encoded_records(events: list[tuple[Event, str]]) -> list[Record]:
    """The CloudEvents envelopes of (event, key) pairs, encoded: what choreograph and the raw client both publish.

    Encoded before the clock starts, as in the SQLite bench: building events is the application's
    work, the same whichever client sends them.
    """
    return [Record(encode(Envelope.for_event(event, source="bench", key=key)), key) for event, key in events]


def wait_for_port(port: int, what: str, timeout: float = 10.0) -> None:
    """Block until 127.0.0.1:``port`` accepts a connection; RuntimeError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout:g}s")


async def warm_up(publish: Callable[[Any], Awaitable[Any]], message: Any, handled: Callable[[], bool]) -> None:
    """Publish one message and wait until it was handled: the consumer has joined its group (not timed).

    The raw clients and FastStream have their group or subscription in place before their clock
    starts; choreograph's consumer joins inside ``app.start()``'s background task, so without this
    its join (streams, consumers, leases) would count as throughput time.
    """
    await publish(message)
    deadline = time.monotonic() + 60
    while not handled():
        if time.monotonic() > deadline:
            raise RuntimeError("the consumer did not join within 60 s")
        await asyncio.sleep(0.01)
