"""``choreograph dlq groups / retry --group --rate / edit / archive / restore / note / history`` and ``audit``.

On SQLite, with dead letters made by a real App: the commands run as an
operator would type them, in separate invocations sharing only the broker file.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from choreograph.brokers.sqlite import SqliteBroker
from choreograph.core.errors import ConfigurationError
from choreograph.ops.cli import cli
from choreograph.ops.dlq_edit_cli import validator
from choreograph.runtime.audit import AuditLog
from tests.conftest import wait_until
from tests.unit.ops.dlq_scenario import Order, order_app

runner = CliRunner()
APP = "tests.unit.ops.dlq_scenario:cli_app"


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(cli, list(args))
    return result.exit_code, result.output


def jsons(output: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A SQLite broker holding six dead letters: two of each of three failure groups."""
    url = f"sqlite:///{tmp_path / 'dlq.db'}"
    app = order_app(url, [], set())

    async def fail_six() -> None:
        await app.start()
        for n in range(6):
            await app.publish(Order(n=n, kind=("value", "reject", "key")[n % 3]))
        await wait_until(lambda: app.stats()["orders.place"].dead_letters == 6, 30, "six dead letters")
        await app.close()

    asyncio.run(fail_six())
    return url


def test_groups_retry_edit_archive_history_and_audit(url: str) -> None:
    # Given six dead letters, dlq groups shows three groups of two
    code, output = invoke("dlq", "groups", "--json", "--broker", url)
    assert code == 0, output
    groups = {str(g["error_type"]): g for g in jsons(output)}
    assert {k: g["count"] for k, g in groups.items()} == {"ValueError": 2, "Reject": 2, "KeyError": 2}
    assert groups["KeyError"]["frame"] == "ops/dlq_scenario.py:lookup"
    code, output = invoke("dlq", "groups", "--broker", url)
    assert code == 0 and str(groups["Reject"]["fingerprint"]) in output

    # When the ValueError group is retried at 50/s, exactly its two entries are resubmitted
    value_fp = str(groups["ValueError"]["fingerprint"])
    members = {str(d["id"]) for d in jsons(invoke("dlq", "list", "-g", value_fp, "--json", "--broker", url)[1])}
    assert len(members) == 2
    code, output = invoke("dlq", "retry", "--group", value_fp, "--rate", "50", "--actor", "alice", "--broker", url)
    assert code == 0 and "resubmitted 2;" in output and "retry progress: 2/2" in output, output
    statuses = {
        str(d["id"]): d["status"] for d in jsons(invoke("dlq", "list", "--status", "all", "--json", "-b", url)[1])
    }
    assert {i for i, s in statuses.items() if s == "resubmitted"} == members

    # Edit-and-retry is refused while editing is off, then when the payload breaks the schema
    reject_id = str(groups["Reject"]["sample_id"])
    code, output = invoke("dlq", "edit", reject_id, "--set", "kind=ok", "--app", APP, "--yes", "--broker", url)
    assert code == 2 and "editing dead letters is off" in output
    assert invoke("dlq", "settings", "--editing", "on", "--actor", "alice", "--broker", url) == (0, "editing: on\n")
    code, output = invoke("dlq", "edit", reject_id, "--set", 'n="many"', "--app", APP, "--yes", "--broker", url)
    assert code == 2 and "does not match" in output, output
    code, output = invoke(
        "dlq", "edit", reject_id, "--set", "kind=ok", "--app", APP, "--yes", "-b", url, "--actor", "bob"
    )
    assert code == 0 and "marked edited" in output, output
    code, output = invoke("dlq", "show", reject_id, "--json", "--broker", url)
    shown = jsons(output)[0]
    assert shown["status"] == "resubmitted" and isinstance(shown["edited"], dict)

    # Archive hides a group from dlq groups until it is restored
    key_fp = str(groups["KeyError"]["fingerprint"])
    assert invoke("dlq", "archive", "--group", key_fp, "--retention", "2h", "--broker", url)[1].startswith("archived 2")
    listed = {g["fingerprint"] for g in jsons(invoke("dlq", "groups", "--json", "--broker", url)[1])}
    assert key_fp not in listed
    assert invoke("dlq", "restore", "--group", key_fp, "--broker", url) == (0, "restored 2\n")
    assert invoke("dlq", "note", key_fp, "JIRA-7 missing SKUs", "--broker", url)[0] == 0
    code, output = invoke("dlq", "groups", "--json", "--broker", url)
    assert {g["fingerprint"]: g["note"] for g in jsons(output)}[key_fp] == "JIRA-7 missing SKUs"

    # Then history lists the group's actions and audit every action, with who did it
    code, output = invoke("dlq", "history", "--group", value_fp, "--json", "--broker", url)
    [retried] = jsons(output)
    assert retried["action"] == "retry" and retried["count"] == 2 and retried["failed_again_since"] == 0
    code, output = invoke("audit", "--json", "--broker", url)
    trail = [(r["action"], r["count"]) for r in jsons(output)]
    assert trail == [("retry", 2), ("settings", 1), ("edit", 1), ("archive", 2), ("restore", 2), ("note", 1)]
    assert [r["actor"] for r in jsons(output)][:3] == ["alice", "alice", "bob"]
    code, output = invoke("audit", "--action", "edit", "--broker", url)
    assert code == 0 and "bob" in output and "alice" not in output


def test_untrusted_text_is_shown_escaped(url: str) -> None:
    code, output = invoke("dlq", "list", "--broker", url)
    assert code == 0 and "\x1b" not in output and "\\x1b[2J[red]x[/red]" in output
    reject = next(g for g in jsons(invoke("dlq", "groups", "--json", "-b", url)[1]) if g["error_type"] == "Reject")
    assert "\x1b" not in json.dumps(reject) and "\x1b" in str(reject["sample_message"])  # JSON-escaped, then decoded
    code, output = invoke("dlq", "show", str(reject["sample_id"]), "--broker", url)
    assert code == 0 and "\x1b" not in output


def test_group_option_and_selection_errors(url: str) -> None:
    assert invoke("dlq", "retry", "--broker", url)[0] == 2
    code, output = invoke("dlq", "retry", "--group", "nodot", "--broker", url)
    assert code == 2 and "fingerprint" in output
    code, output = invoke("dlq", "retry", "--group", "orders.place", "--broker", url)
    assert code == 2 and "narrows --all" in output
    code, output = invoke("dlq", "retry", "--group", "orders.place", "--all", "--rate", "0", "--broker", url)
    assert code == 2 and "--rate" in output
    code, output = invoke("audit", "--action", "explode", "--broker", url)
    assert code == 2


def test_a_broker_without_a_key_value_store_keeps_no_audit() -> None:
    with pytest.raises(ConfigurationError, match="keeps no key-value store"):
        AuditLog.of(object())


async def test_audit_records_keep_their_order_and_filter(tmp_path: Path) -> None:
    broker = SqliteBroker(tmp_path / "a.db")
    try:
        audit = AuditLog.of(broker)
        for action, count in (("replay", 10), ("reset", 1), ("replay", 5)):
            await audit.record(action, target="orders", count=count, actor="ops-bot", details={"to": "earliest"})
        assert [r.count for r in await audit.records()] == [10, 1, 5]
        assert [r.count for r in await audit.records(action="replay")] == [10, 5]
        assert [r.count for r in await audit.records(limit=2)] == [1, 5]
        with pytest.raises(ConfigurationError):
            await audit.record("explode", target="x", count=1)
        with pytest.raises(ConfigurationError):
            await audit.record("replay", target="x", count=1, actor="evil\nname")
    finally:
        await broker.close()


def test_edit_in_the_editor_and_show_a_group_sample(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an "editor" that sets kind to ok in the file it is given
    script = tmp_path / "editor.py"
    script.write_text(
        "import json, sys\n"
        "doc = json.load(open(sys.argv[1]))\n"
        "doc['kind'] = 'ok'\n"
        "json.dump(doc, open(sys.argv[1], 'w'))\n"
    )
    monkeypatch.setenv("EDITOR", f"{sys.executable} {script}")
    monkeypatch.delenv("VISUAL", raising=False)
    reject = next(g for g in jsons(invoke("dlq", "groups", "--json", "-b", url)[1]) if g["error_type"] == "Reject")
    code, output = invoke("dlq", "show", "--group", str(reject["fingerprint"]), "--json", "--broker", url)
    assert code == 0 and jsons(output)[0]["id"] == reject["sample_id"]
    assert invoke("dlq", "settings", "--editing", "on", "--broker", url)[0] == 0
    # When the operator edits and confirms, the change is named and the copy sent
    result = runner.invoke(cli, ["dlq", "edit", str(reject["sample_id"]), "--app", APP, "--broker", url], input="y\n")
    assert result.exit_code == 0, result.output
    assert "changed: kind" in result.output and "marked edited" in result.output
    # And an edit that changes nothing sends nothing
    other = next(d["id"] for d in jsons(invoke("dlq", "list", "--json", "-b", url)[1]) if d["error_type"] == "KeyError")
    monkeypatch.setenv("EDITOR", "true")
    code, output = invoke("dlq", "edit", str(other), "--app", APP, "--broker", url)
    assert code == 1 and "no change" in output


def test_audit_hides_credentials_recorded_by_a_tool(tmp_path: Path) -> None:
    path = tmp_path / "a.db"

    async def record() -> None:
        broker = SqliteBroker(path)
        try:
            await AuditLog.of(broker).record(
                "copy",
                target="orders to redis://admin:hunter2@prod:6379/0",
                count=3,
                details={"password": "hunter2", "to": "nats://u:hunter2@n:4222"},
            )
        finally:
            await broker.close()

    asyncio.run(record())
    for args in (["audit"], ["audit", "--json"]):
        code, output = invoke(*args, "--broker", f"sqlite:///{path}")
        assert code == 0 and "copy" in output and "hunter2" not in output, output


def test_edit_validates_against_the_registered_schema_without_an_app(url: str) -> None:
    reject = next(g for g in jsons(invoke("dlq", "groups", "--json", "-b", url)[1]) if g["error_type"] == "Reject")
    sample = str(reject["sample_id"])
    assert invoke("dlq", "settings", "--editing", "on", "--broker", url)[0] == 0
    # Given the schema the App registered when it published (no --app given)
    code, output = invoke("schema", "list", "--broker", url)
    assert code == 0 and Order.event_type() in output, output
    code, output = invoke("dlq", "edit", sample, "--set", 'n="many"', "--yes", "--broker", url)
    assert code == 2 and "registered schema" in output, output
    assert jsons(invoke("dlq", "show", sample, "--json", "-b", url)[1])[0]["status"] == "open"
    code, output = invoke("dlq", "edit", sample, "--set", "kind=ok", "--yes", "--broker", url)
    assert code == 0 and "marked edited" in output, output


def test_an_edit_with_no_schema_to_check_against_is_refused(tmp_path: Path) -> None:
    check = validator(f"sqlite:///{tmp_path / 'empty.db'}", None)
    with pytest.raises(ConfigurationError, match="no schema to check the edit"):
        check("shop.order-placed", 1, {"n": 1})
