"""The deployment and operations guides name the files and tools that exist."""

from __future__ import annotations

import re
from pathlib import Path

from choreograph.ops.backup_cli import NATIVE_TOOLS

ROOT = Path(__file__).resolve().parents[2]


def test_operations_guide_covers_every_backend_the_backup_command_points_to() -> None:
    guide = (ROOT / "docs" / "operations.md").read_text()
    headings = set(re.findall(r"^## (.+)$", guide, re.MULTILINE))
    assert {"SQLite", "NATS JetStream", "Redis", "Kafka"} <= headings
    for tool in ("nats stream backup", "nats stream restore", "BGSAVE", "MirrorMaker 2"):
        assert tool in guide
    assert all(name in ("nats", "redis", "kafka", "memory") for name in NATIVE_TOOLS)
    assert (ROOT / "tests" / "deploy" / "test_recovery_drill.py").exists() and "test_recovery_drill.py" in guide


def test_deploy_guide_names_every_file_in_deploy() -> None:
    guide = (ROOT / "docs" / "deploy.md").read_text()
    for path in sorted((ROOT / "deploy").rglob("*")):
        if path.is_file():
            assert f"deploy/{path.relative_to(ROOT / 'deploy').as_posix()}" in guide, path
