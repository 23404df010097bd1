"""The calibration block every result file starts with: what this machine can do today."""

from __future__ import annotations

import os
import platform
import sqlite3
import statistics
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from choreograph import Envelope, encode
from choreograph.core import codec


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB (VmHWM).

    Not ``ru_maxrss``: Linux carries that across fork and exec, so a peer
    benchmark started by ``python -m bench`` would report its parent's peak.
    """
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return float("nan")


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def fdatasync_ms(rounds: int = 200) -> dict[str, float]:
    """Time a 4 KiB write + fdatasync on this disk (what one durable commit costs at least)."""
    samples = []
    with tempfile.NamedTemporaryFile(dir=".") as handle:
        block = os.urandom(4096)
        for _ in range(rounds):
            started = time.perf_counter()
            handle.write(block)
            handle.flush()
            os.fdatasync(handle.fileno())
            samples.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": round(statistics.median(samples), 3), "p99_ms": round(_percentile(samples, 0.99), 3)}


def reference_envelope() -> bytes:
    """The ~300-byte envelope every workload sends."""
    return encode(
        Envelope(
            id="0190f6d8-3c1a-7cc4-9d2f-6f1b2a3c4d5e",
            source="bench",
            type="bench.order.placed",
            data={"order_id": "order-000123", "customer": "customer-42", "total_cents": 12345, "note": "x" * 64},
            time="2026-11-26T10:00:00.000000Z",
            correlationid="0190f6d8-3c1a-7cc4-9d2f-6f1b2a3c4d5e",
            partitionkey="order-000123",
            schemaversion=1,
        )
    )


def decode_us(rounds: int = 20000) -> float:
    """Microseconds to decode the reference envelope."""
    raw = reference_envelope()
    started = time.perf_counter()
    for _ in range(rounds):
        codec.decode(raw)
    return round((time.perf_counter() - started) / rounds * 1e6, 3)


LIBRARIES = ("choreograph", "orjson", "pydantic", "nats-py", "redis", "aiokafka", "faststream")


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "absent"


def calibration() -> dict[str, Any]:
    """Return the calibration block."""
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "libraries": {
            name: _version(name)
            for name in ("choreograph", "orjson", "pydantic", "nats-py", "redis", "aiokafka", "faststream")
        },
        "fdatasync": fdatasync_ms(),
        "orjson_decode_reference_envelope_us": decode_us(),
        "reference_envelope_bytes": len(reference_envelope()),
    }
