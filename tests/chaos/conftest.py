"""Chaos profiles: a bounded one inside ``make test``, a long one in ``make test-chaos``.

``CHOREOGRAPH_CHAOS=long`` selects the long profile (20,000 events, 10 kills and 2
broker restarts per backend); the default is the bounded profile.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Profile:
    events: int
    kills: int
    restarts: int
    timeout: float


PROFILES = {
    "bounded": Profile(events=2_000, kills=2, restarts=1, timeout=420.0),
    "long": Profile(events=20_000, kills=10, restarts=2, timeout=900.0),
}


@pytest.fixture
def chaos_profile() -> Profile:
    """The profile named by $CHOREOGRAPH_CHAOS (default ``bounded``)."""
    return PROFILES[os.environ.get("CHOREOGRAPH_CHAOS", "bounded")]
