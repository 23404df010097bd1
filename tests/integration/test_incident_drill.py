"""The stuck-orders incident drill, end to end on SQLite, and the demo summary with a broken compensation."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from choreograph.examples.shop.app import _share

ROOT = Path(__file__).resolve().parents[2]
APP_SPEC = "choreograph.examples.shop.app:app"
FLOWS = "choreograph.examples.shop.flows:incident_flows"
ORDERS = 40


def choreograph(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "choreograph", *args],
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_stuck_orders_drill_breaks_alerts_follows_the_runbook_and_recovers(tmp_path: Path) -> None:
    # Given the drill run as a user would, on a fresh SQLite log in an empty directory
    result = choreograph(tmp_path, "demo", "--incident", "stuck-orders", "--orders", str(ORDERS), "--timeout", "240")
    text = result.stdout + result.stderr
    assert result.returncode == 0, text
    # Then it says which alert pages and where its runbook is
    assert re.search(r"PAGE\s+ChoreographFlowsStuck\s+flow=order, team=storefront.*-> team storefront", text), text
    assert "runbook: docs/runbooks/stuck-flows.md" in text
    assert re.search(r"TICKET\s+ChoreographDeadLettersOpen\s+group=shipping\.ship.*team=fulfilment", text), text
    broken = int(re.search(r"(\d+) dead-lettered, (\d+) orders stuck", text).group(1))  # type: ignore[union-attr]
    assert broken > 0
    # and it ran the runbook's commands, which the runbook itself documents
    fingerprint = re.search(r"\$ choreograph dlq retry --group ([0-9a-f]{16}) --rate", text)
    assert fingerprint, text
    assert f"resubmitted {broken};" in text
    runbook = (ROOT / "docs" / "runbooks" / "stuck-flows.md").read_text()
    for command in ("choreograph flows", "choreograph dlq groups", "choreograph dlq retry --group"):
        assert f"$ {command}" in text and command in runbook, command
    # And afterwards, by the same commands as written: nothing stuck, nothing in flight, no open dead letter
    env = {"CHOREOGRAPH_BROKER": "sqlite:///./.choreograph-demo.db"}
    flows = choreograph(tmp_path, "flows", APP_SPEC, "--flows", FLOWS, "--json", env=env)
    assert flows.returncode == 0, flows.stderr
    order = json.loads(flows.stdout)["order"]
    assert (order["stuck"], order["in_flight"]) == (0, 0), order
    assert order["completed"] + order["failed"] == order["started"] == ORDERS
    letters = choreograph(tmp_path, "dlq", "list", "--json", env=env)
    assert letters.returncode == 0 and letters.stdout.strip() == "", letters.stdout
    # and the drill's temporary flags file is gone with its directory
    flags = Path(re.search(r"new-carrier-api on \((\S+)\)", text).group(1))  # type: ignore[union-attr]
    assert flags.name == "shop-flags" and not flags.parent.exists()


def test_demo_summary_never_prints_a_negative_count_when_compensation_breaks(tmp_path: Path) -> None:
    # Given the release handler broken: declined orders keep their stock and are never cancelled
    result = choreograph(
        tmp_path,
        "demo", "--orders", str(ORDERS), "--poison", "0", "--duplicates", "0", "--timeout", "240",
        env={"SHOP_BREAK_RELEASE": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    rows = dict(re.findall(r"^[│|] (\S.*?)\s+[│|] (\S.*?)\s+[│|]$", result.stdout, re.MULTILINE))
    # Then the out-of-stock row counts exactly the orders the shop rejected for stock, not minus the broken ones
    expected = sum(1 for n in range(ORDERS) if _share("stock", f"order-{n:05d}") < 0.1)
    assert rows["cancelled: out of stock"] == str(expected), rows
    assert int(rows["compensation missing or failed"]) > 0, rows
    assert all(not value.startswith("-") for value in rows.values()), rows
