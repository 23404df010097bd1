"""The shop's payment ledger with the consumer outbox (opt-in via SHOP_PAYMENT_LEDGER)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]


def test_with_a_ledger_database_each_captured_payment_is_booked_once_and_orders_complete(tmp_path: Path) -> None:
    # Given the shop imported with a payment ledger in a SQLite file, no failures, declines or stock-outs
    env = {
        **os.environ,
        "SHOP_PAYMENT_LEDGER": f"sqlite:///{tmp_path}/ledger.db",
        "SHOP_FAIL_RATE": "0",
        "SHOP_DECLINE_RATE": "0",
        "SHOP_STOCKOUT_RATE": "0",
    }
    # When five orders run through it (the relay shipping the payment events)
    proc = subprocess.run(
        [sys.executable, "-m", "tests.unit.outbox.shop_ledger_child"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    # Then five payments are booked, five PaymentCaptured were shipped by the relay, and every order completed
    assert json.loads(proc.stdout.splitlines()[-1]) == {"ledger": 5, "completed": 5, "shipped": 5}


def test_without_the_setting_the_payment_handler_declares_no_option() -> None:
    from choreograph.examples.shop.app import app

    [capture] = [spec for spec in app.handlers if spec.func.__name__ == "capture_payment"]
    assert capture.options == ()
