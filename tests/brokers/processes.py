"""Helpers every test-broker fixture shares: free ports, and skip-or-fail on a missing binary."""

from __future__ import annotations

import os
import socket

import pytest

REQUIRE_ENV = "CHOREOGRAPH_REQUIRE_BROKERS"


def skip_or_fail(reason: str) -> None:
    """Skip the test, or fail it when CHOREOGRAPH_REQUIRE_BROKERS=1 (CI)."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1, so a missing broker is a failure)", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
