"""choreograph.testing declares its public names once; the app harness imports without pytest."""

from __future__ import annotations

import subprocess
import sys

import choreograph.testing


def test_every_public_name_resolves_and_nothing_else_is_lazy() -> None:
    names = choreograph.testing.__all__
    assert len(names) == len(set(names))
    assert set(choreograph.testing._LAZY) | {"TestApp", "DrainTimeout", "UnexpectedDeadLetter"} == set(names)
    for name in names:
        assert getattr(choreograph.testing, name) is not None


def test_importing_the_harness_loads_neither_pytest_nor_the_conformance_suite() -> None:
    # A user's test run with filterwarnings=error must not see the suite's unregistered pytest marks.
    code = (
        "import sys\n"
        "from choreograph.testing import TestApp\n"
        "loaded = sorted(m for m in sys.modules if m == 'pytest' or m.startswith('choreograph.testing.conformance'))\n"
        "print(loaded)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
