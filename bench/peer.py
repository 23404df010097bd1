"""Pieces shared by the peer benchmarks (``bench/*_bench.py`` run against a broker server)."""

from __future__ import annotations

import socket
import time
from typing import Any

from bench.calibration import peak_rss_mb
from choreograph import Envelope, Event, Record, encode


def free_port() -> int:
    """Return a TCP port on loopback that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def end_to_end_record(backend: str, ours: float, reference: str, theirs: float, **extra: Any) -> dict[str, Any]:
    """One result record: choreograph end to end against ``reference`` measured in the same run."""
    return {
        "backend": backend,
        "workload": "end-to-end",
        "events_per_s": round(ours),
        "p50_ms": None,
        "p99_ms": None,
        "peak_rss_mb": peak_rss_mb(),
        "reference": reference,
        "reference_events_per_s": round(theirs),
        "ratio": round(ours / theirs, 3),
        **extra,
    }


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
