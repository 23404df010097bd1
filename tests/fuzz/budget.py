"""How many inputs each fuzz test runs under the selected profile (``HYPOTHESIS_PROFILE``: ``ci`` or ``fuzz``).

``ci`` keeps the whole fuzz directory well under a minute in the normal test
run. ``fuzz`` gives each test its share of :data:`FUZZ_TOTAL` inputs (the
shares below sum to 1), for ``make fuzz``.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Final

from hypothesis import HealthCheck, settings

FUZZ_TOTAL: Final = int(os.environ.get("CHOREOGRAPH_FUZZ_TOTAL", "1000000"))
"""Inputs ``make fuzz`` runs across all fuzz tests (at least); ``CHOREOGRAPH_FUZZ_TOTAL`` sets a smaller run."""

CI_EXAMPLES: Final = 200
"""Inputs per fuzz test in the normal test run (cheaper tests may ask for fewer, never more)."""

PROFILE: Final = os.environ.get("HYPOTHESIS_PROFILE", "ci")
_HEALTH: Final = (HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much)


def register_profiles() -> None:
    """Register ``ci`` and ``fuzz`` (idempotent)."""
    settings.register_profile("ci", max_examples=CI_EXAMPLES, deadline=None, suppress_health_check=_HEALTH)
    settings.register_profile(
        "fuzz", max_examples=CI_EXAMPLES, deadline=None, suppress_health_check=_HEALTH, print_blob=True
    )


def fuzz_settings(share: float, *, ci: int = CI_EXAMPLES) -> settings:
    """Settings for a fuzz test: ``ci`` examples in the normal run, ``share`` of FUZZ_TOTAL under ``fuzz``."""
    register_profiles()
    if PROFILE == "fuzz":
        return settings(settings.get_profile("fuzz"), max_examples=int(FUZZ_TOTAL * share) + 1)
    return settings(settings.get_profile("ci"), max_examples=min(ci, CI_EXAMPLES))


INPUTS: Counter[str] = Counter()
"""Inputs fed to the code under test in this run, per test (a consumer batch counts each of its deliveries)."""


def fed(test: str, count: int = 1) -> None:
    """Count ``count`` inputs fed by ``test`` (reported at the end of the run)."""
    INPUTS[test] += count
