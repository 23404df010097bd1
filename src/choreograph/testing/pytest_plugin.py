"""A pytest plugin: deselect ``stress``-marked tests unless the run asks for them with ``-m stress``.

Activate it from a ``conftest.py``::

    from choreograph.testing.pytest_plugin import pytest_collection_modifyitems  # noqa: F401
"""

from __future__ import annotations

import pytest

STRESS_MARK = "stress"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Drop stress tests from runs whose ``-m`` expression does not mention ``stress``."""
    if STRESS_MARK in (config.getoption("markexpr", "") or ""):
        return
    kept = [item for item in items if item.get_closest_marker(STRESS_MARK) is None]
    dropped = [item for item in items if item.get_closest_marker(STRESS_MARK) is not None]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
