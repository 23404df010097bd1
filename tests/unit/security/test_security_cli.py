"""`choreograph keys generate | list | rotate` and `choreograph export acl`."""

from __future__ import annotations

from pathlib import Path

import orjson
from typer.testing import CliRunner

from choreograph.ops.cli import cli
from choreograph.security import KeyRing

runner = CliRunner()


def test_generate_rotate_list_and_never_a_private_key(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    # Given a key generated then rotated for payment
    assert runner.invoke(cli, ["keys", "generate", "payment", "--dir", str(keys)]).exit_code == 0
    again = runner.invoke(cli, ["keys", "generate", "payment", "--dir", str(keys)])
    assert again.exit_code == 2 and "keys rotate payment" in again.output
    rotated = runner.invoke(cli, ["keys", "rotate", "payment", "--dir", str(keys)])
    assert rotated.exit_code == 0, rotated.output
    # When the keys are listed as JSON
    listed = runner.invoke(cli, ["keys", "list", "--dir", str(keys), "--json"])
    doc = orjson.loads(listed.stdout)
    # Then there are two, one signing, one kept for verification, and no private material anywhere
    assert sorted(k["role"] for k in doc["keys"]) == ["signing", "verify"]
    ring = KeyRing.load(keys)
    key = ring.signing_key("payment")
    assert key is not None
    from choreograph.security.canonical import b64

    secret = b64(key.private.private_bytes_raw())
    table = runner.invoke(cli, ["keys", "list", "--dir", str(keys)])
    for output in (listed.output, table.output, rotated.output):
        assert secret not in output
    assert key.id in table.output


def test_list_without_a_key_directory_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(cli, ["keys", "list", "--dir", str(tmp_path / "none")])
    assert result.exit_code == 2 and "keys generate" in result.output


def test_export_acl_for_the_shop(tmp_path: Path) -> None:
    shop = "choreograph.examples.shop.app:app"
    nats = runner.invoke(cli, ["export", "acl", shop, "--format", "nats"])
    assert nats.exit_code == 0, nats.output
    assert 'user: "payment"' in nats.stdout and '"choreo.shop_payment_captured.>"' in nats.stdout
    redis = runner.invoke(cli, ["export", "acl", shop, "--format", "redis", "--prefix", "demo"])
    line = next(x for x in redis.stdout.splitlines() if x.startswith("ACL SETUSER payment "))
    assert "~demo:{shop.payment.captured}:p*" in line and "%R~demo:{shop.inventory.reserved}:p*" in line
    policy = tmp_path / "policy.toml"
    policy.write_text('[services.payment]\npublish = ["shop.payment.captured"]\nconsume = []\n')
    kafka = runner.invoke(cli, ["export", "acl", shop, "--format", "kafka", "--policy", str(policy)])
    assert kafka.exit_code == 0, kafka.output
    assert kafka.stdout.count("kafka-acls.sh") == 1 and "User:payment" in kafka.stdout


def test_a_key_directory_that_cannot_be_written_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    # Given a --dir under a regular file (no directory can be made there)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    for command, code in ((["generate", "payment"], 1), (["rotate", "payment"], 2)):
        # When a key is generated or rotated into it
        result = runner.invoke(cli, ["keys", *command, "--dir", str(blocker / "keys")])
        # Then the command fails with a message naming the directory (rotate: there are no keys), no traceback
        assert result.exit_code == code, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        assert "keys" in result.output
