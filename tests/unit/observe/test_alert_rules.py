"""Every generated alert is unit-tested with promtool (fires when it should, quiet when it should not),
has a runbook that exists, and routes by owner through an Alertmanager configuration amtool accepts."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from choreograph import App, Event
from choreograph.observe.alerting import RUNBOOKS, AlertSettings, flow_owners
from choreograph.observe.alertmanager import alertmanager_config, alertmanager_yaml
from choreograph.observe.alerts import alert_names, prometheus_rules, rule_groups
from choreograph.observe.flows import Flow
from choreograph.observe.yaml_text import to_yaml
from choreograph.ops.observe_cli import register
from choreograph.schema.topology import Ownership
from tests.unit.observe.alert_cases import APP, APP_SPEC, CASES, FLOW_OWNERS, OWNERS, SLOS, AlertCase, expand

RUNBOOK_DIR = Path(__file__).parents[3] / "docs" / "runbooks"
SETTINGS = AlertSettings(APP, APP_SPEC, OWNERS, "https://runbooks.example/choreograph", 60.0, FLOW_OWNERS)


def tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CHOREOGRAPH_REQUIRE_BROKERS") == "1":
            pytest.fail(f"{name} is required (apt-get install {package}) when CHOREOGRAPH_REQUIRE_BROKERS=1")
        pytest.skip(f"{name} not installed (apt-get install {package})")
    return found


def rules_data() -> dict[str, Any]:
    return rule_groups(SLOS, settings=SETTINGS)


def annotations_of(alert: str, labels: dict[str, str]) -> dict[str, str]:
    """The annotations of the copy of ``alert`` whose static labels the expected alert carries."""
    rules = [r for g in rules_data()["groups"] for r in g["rules"] if r.get("alert") == alert]
    found = [r for r in rules if r["labels"].items() <= labels.items()]
    assert found, (alert, labels)
    return dict(max(found, key=lambda r: len(r["labels"]))["annotations"])  # the most specific copy


def promtool_tests(case: AlertCase) -> list[dict[str, Any]]:
    expected = [
        {
            "exp_labels": e.labels,
            "exp_annotations": {
                k: expand(v, e.labels, e.value) for k, v in annotations_of(case.alert, e.labels).items()
            },
        }
        for e in case.expected
    ]

    def series(values: dict[str, str]) -> list[dict[str, str]]:
        return [{"series": name, "values": v} for name, v in values.items()]

    return [
        {
            "name": f"{case.alert} fires",
            "interval": "1m",
            "input_series": series(case.firing),
            "alert_rule_test": [{"eval_time": case.at, "alertname": case.alert, "exp_alerts": expected}],
        },
        {
            "name": f"{case.alert} stays quiet: {case.why_quiet}",
            "interval": "1m",
            "input_series": series(case.quiet),
            "alert_rule_test": [{"eval_time": case.quiet_at or case.at, "alertname": case.alert, "exp_alerts": []}],
        },
    ]


def test_every_generated_alert_has_a_firing_and_a_quiet_case() -> None:
    assert alert_names(rules_data()) == {case.alert for case in CASES} == set(RUNBOOKS)


def test_every_alert_fires_and_stays_quiet_in_promtool(tmp_path: Path) -> None:
    promtool = tool("promtool", "prometheus")
    # Given the generated rules and one test group per case and direction
    (tmp_path / "rules.yml").write_text(prometheus_rules(SLOS, settings=SETTINGS))
    check = subprocess.run([promtool, "check", "rules", "rules.yml"], cwd=tmp_path, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    suite = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [test for case in CASES for test in promtool_tests(case)],
    }
    (tmp_path / "tests.yml").write_text(to_yaml(suite))
    # When promtool evaluates them, then every expectation holds
    result = subprocess.run([promtool, "test", "rules", "tests.yml"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-6000:]


def test_every_alert_has_a_runbook_url_to_a_runbook_that_exists() -> None:
    rules = [r for g in rules_data()["groups"] for r in g["rules"] if "alert" in r]
    for rule in rules:
        url = rule["annotations"]["runbook_url"]
        assert url.startswith("https://runbooks.example/choreograph/"), url
        path = RUNBOOK_DIR / url.rsplit("/", 1)[1]
        assert path.is_file(), f"{rule['alert']}: {path} is missing"
        text = path.read_text()
        assert rule["alert"] in text, f"{path} does not name {rule['alert']}"
        for section in ("## Symptoms", "## Open", "## Commands", "## Decide", "## Verify", "## Escalate"):
            assert section in text, f"{path}: no {section!r} section"


def test_descriptions_have_no_placeholder_text() -> None:
    text = prometheus_rules(SLOS, settings=SETTINGS)
    assert "<module>" not in text and "MODULE:APP" not in text
    assert f"choreograph slo {APP_SPEC}" in text and f"choreograph flows {APP_SPEC}" in text
    # without the app spec, commands that need it are left out rather than faked
    bare = prometheus_rules(SLOS, app_name=APP)
    assert "choreograph slo" not in bare and "<" not in re.sub(r"\{\{[^}]*\}\}", "", bare)


def test_alertmanager_config_routes_by_owner_and_passes_amtool(tmp_path: Path) -> None:
    amtool = tool("amtool", "prometheus-alertmanager")
    config = alertmanager_config(APP, OWNERS)
    routes = config["route"]["routes"]
    team = next(r for r in routes if r["matchers"] == ['team="payments"'])
    assert team["receiver"] == "team-payments-ticket"
    assert team["routes"][0] == {
        "matchers": ['severity="page"'],
        "receiver": "team-payments-page",
        "repeat_interval": "1h",
    }
    assert routes[0] == {"matchers": ['severity="info"'], "receiver": "null"}
    assert config["route"]["receiver"] == "app-shop-ticket"
    replay = config["inhibit_rules"][0]
    assert replay["source_matchers"] == ['alertname="ChoreographReplayRunning"']
    assert replay["target_matchers"] == ['alertname="ChoreographConsumerLagHigh"'] and replay["equal"] == ["group"]
    path = tmp_path / "alertmanager.yml"
    path.write_text(alertmanager_yaml(APP, OWNERS, slack_api_url_file=str(tmp_path / "slack-url")))
    result = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    # and a page for the payments team reaches its page receiver, a ticket its ticket receiver
    for labels, receiver in (
        (["team=payments", "severity=page"], "team-payments-page"),
        (["team=payments", "severity=ticket"], "team-payments-ticket"),
        (["severity=page"], "app-shop-page"),
        (["severity=ticket"], "app-shop-ticket"),
        (["team=payments", "severity=info"], "null"),
    ):
        routed = subprocess.run(
            [amtool, "config", "routes", "test", "--config.file", str(path), *labels], capture_output=True, text=True
        )
        assert routed.stdout.strip() == receiver, (labels, routed.stdout, routed.stderr)


class Placed(Event, type="owners.placed"):
    order_id: str


class Charged(Event, type="owners.charged"):
    order_id: str


def test_a_flow_is_owned_by_the_owner_of_its_start_events_publisher() -> None:
    app = App("owners", broker="memory://")
    app.service("storefront", owner="web", oncall="#web").publishes(Placed)
    app.service("payment").publishes(Charged)  # unowned
    orders = Flow("order", start=[Placed], success=[Charged])
    charges = Flow("charge", start=[Charged], success=[Placed])
    unknown = Flow("refund", start=["owners.refund"], success=[Charged])  # nobody here publishes its start
    assert flow_owners([orders, charges, unknown], app.topology()) == {"order": Ownership("web", "#web")}


def test_export_commands_carry_the_shops_owners_and_runbook_base(tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    rules, routes = tmp_path / "rules.yml", tmp_path / "am.yml"
    shop = "choreograph.examples.shop.app:app"
    args = ["export", "prometheus-rules", shop, "-o", str(rules), "--runbook-base-url", "https://wiki.example/rb/"]
    result = runner.invoke(app, [*args, "--lag-seconds", "30"])
    assert result.exit_code == 0, result.output
    text = rules.read_text()
    assert '"https://wiki.example/rb/stuck-flows.md"' in text and "> 30 unless" in text
    assert 'team: "payments"' in text and 'team: "fulfilment"' in text and 'team: "storefront"' in text
    assert f"choreograph flows {shop}" in text
    result = runner.invoke(app, ["export", "alertmanager", shop, "-o", str(routes)])
    assert result.exit_code == 0, result.output
    names = {receiver["name"] for receiver in alertmanager_config("shop", {})["receivers"]}
    assert names == {"null", "app-shop-page", "app-shop-ticket"}
    for team in ("payments", "fulfilment", "storefront"):
        assert f'"team-{team}-page"' in routes.read_text()


def test_rules_read_only_metrics_that_something_exports() -> None:
    # Given every series the App's metrics, the flow collector and an outbox relay can export
    from choreograph.observe.flows.metrics import FlowCollector
    from choreograph.observe.metrics import Metrics, sample_names
    from choreograph.outbox.metrics import RelayMetrics

    app = App("shop", broker="memory://")
    app.declare(*SLOS)
    exported = sample_names(Metrics(app).family_names())
    exported |= {family.name for family in FlowCollector(dict).collect()}
    exported |= sample_names({family.name: family.type for family in RelayMetrics().registry.collect()})
    recorded = {r["record"] for g in rules_data()["groups"] for r in g["rules"] if "record" in r}
    # Then each rule names only those series and the rules recorded alongside
    for group in rules_data()["groups"]:
        for rule in group["rules"]:
            names = set(re.findall(r"\bchoreograph_[a-z0-9_]+", rule["expr"]))
            assert names <= exported, (rule.get("alert") or rule.get("record"), names - exported)
            assert set(re.findall(r"\bchoreograph:[a-z0-9_:]+", rule["expr"])) <= recorded
