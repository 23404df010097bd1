"""SLOs: declarations, SLIs from the log, burn-rate alert rules (promtool) and Grafana dashboards."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import textwrap
import uuid
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from choreograph import App, ConfigurationError, Context, Event, FakeClock, Reject
from choreograph.brokers.memory import MemoryBroker
from choreograph.core import codec
from choreograph.core.broker import Record
from choreograph.core.envelope import Envelope
from choreograph.core.ids import new_id
from choreograph.observe.alerts import BURN_ALERTS, prometheus_rules, rule_groups
from choreograph.observe.dashboards import dashboards, queries
from choreograph.observe.metrics import Metrics, sample_names
from choreograph.observe.slo import DAY, HOUR, MINUTE, SLO, LogSource, declared_slos, format_window, measure
from choreograph.ops.observe_cli import register
from tests.conftest import wait_until

SLOS = [
    SLO.success_rate("handling", target=0.999),
    SLO.latency("fast-completion", event_types=["shop.order.completed"], threshold=5.0, target=0.99),
    SLO.completion(
        "orders-finish",
        start="shop.order.placed",
        ends=["shop.order.completed", "shop.order.cancelled"],
        within=300.0,
        target=0.995,
    ),
]


def promtool() -> str | None:
    found = shutil.which("promtool")
    if found is None and os.environ.get("CHOREOGRAPH_REQUIRE_BROKERS") == "1":
        pytest.fail("promtool is required (apt-get install prometheus) when CHOREOGRAPH_REQUIRE_BROKERS=1")
    return found


# -- declarations ------------------------------------------------------------------


def test_invalid_slos_are_refused_with_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="target"):
        SLO.success_rate("x", target=99.9)
    with pytest.raises(ConfigurationError, match="threshold"):
        SLO.latency("x", event_types=["a"], threshold=0, target=0.9)
    with pytest.raises(ConfigurationError, match="within"):
        SLO.completion("x", start="a", ends=["b"], within=0, target=0.9)
    with pytest.raises(ConfigurationError, match="declared twice"):
        declared_slos([SLOS[0], SLOS[0]])


def test_declared_slos_are_found_among_app_declarations() -> None:
    app = App("a", broker=MemoryBroker())
    app.declare(object(), *SLOS)
    assert declared_slos(app.declarations) == SLOS


def test_windows_format_like_prometheus() -> None:
    assert [format_window(w) for w in (5 * MINUTE, HOUR, 6 * HOUR, 3 * DAY, 90.0)] == ["5m", "1h", "6h", "3d", "90s"]


# -- SLIs from the log ------------------------------------------------------------


class Job(Event, type="slo.job"):
    n: int


async def test_success_rate_is_dead_letters_against_records_consumed() -> None:
    # Given a group that rejected 2 of 10 events
    clock = FakeClock()
    app = App("jobs", broker=MemoryBroker(clock=clock), clock=clock)

    @app.service("worker").on(Job)
    async def work(event: Job, ctx: Context) -> None:
        if event.n < 2:
            raise Reject("bad job")

    await app.start()
    try:
        for n in range(10):
            await app.publish(Job(n=n))
        await wait_until(lambda: sum(s.handled + s.dead_letters for s in app.stats().values()) == 10, 10)
    finally:
        await app.stop()
    # When the SLI is measured
    slo = SLO.success_rate("jobs", target=0.9, groups=["worker.work"])
    report = await measure(slo, LogSource(app.broker, now=clock.now()))
    # Then every window sees 8 good of 10, burning the 10% budget 2x
    for window in (report.compliance, *report.windows):
        assert (window.valid, window.bad) == (10, 2)
        assert window.burn_rate(slo) == pytest.approx(2.0)
    assert report.budget_remaining == pytest.approx(-1.0)


def uuid7_at(when: float) -> str:
    """A UUIDv7 whose timestamp is ``when`` (new_id is monotonic, so it cannot go back in time)."""
    return str(uuid.UUID(int=(int(when * 1000) << 80) | (0x7 << 76) | (0b10 << 62) | uuid.uuid4().int >> 66))


async def append(broker: MemoryBroker, clock: FakeClock, at: float, event_type: str, correlation: str) -> None:
    clock._now = at  # place the record at an exact append time
    envelope = Envelope(id=new_id(), source="t", type=event_type, data={}, correlationid=correlation)
    await broker.publish(event_type, [Record(codec.encode(envelope))])


async def test_latency_sli_is_append_time_minus_correlation_start() -> None:
    # Given two completions, one 1 s and one 10 s after their correlation started
    clock = FakeClock(start=1_800_000_000.0)
    broker = MemoryBroker(clock=clock)
    now = clock.now()
    for started_ago in (1.0, 10.0):
        correlation = uuid7_at(now - started_ago)
        await append(broker, clock, now, "shop.order.completed", correlation)
    # When measured against a 5 s threshold
    report = await measure(SLOS[1], LogSource(broker, now=now + 1))
    # Then one of two is too slow
    assert (report.windows[0].valid, report.windows[0].bad) == (2, 1)


async def test_completion_sli_pairs_starts_and_ends_by_correlation() -> None:
    # Given orders started 1000 s ago: one ended in time, one too late, one never; and one too young to judge
    clock = FakeClock(start=1_800_000_000.0)
    broker = MemoryBroker(clock=clock)
    t = clock.now()
    a, b, c, d = (new_id() for _ in range(4))
    for corr in (a, b, c):
        await append(broker, clock, t - 1000, "shop.order.placed", corr)
    await append(broker, clock, t - 999, "shop.order.placed", c)  # a producer retry: the same process again
    await append(broker, clock, t - 100, "shop.order.placed", d)
    await append(broker, clock, t - 990, "shop.order.completed", a)
    await append(broker, clock, t - 500, "shop.order.cancelled", b)
    # When measured with within=300 s
    report = await measure(SLOS[2], LogSource(broker, now=t))
    # Then 3 starts are judged and 2 did not finish in time
    assert (report.compliance.valid, report.compliance.bad) == (3, 2)
    assert report.windows[0].valid == 0  # nothing started in the last 5 minutes that is old enough


# -- Prometheus rules ---------------------------------------------------------------


def test_burn_rate_alerts_follow_the_sre_workbook() -> None:
    alerts = [r for g in rule_groups(SLOS[:1])["groups"] for r in g["rules"] if "alert" in r and "slo" in r["labels"]]
    by_name = {a["alert"]: a for a in alerts}
    fast = by_name["ChoreographSLOFastBurn"]
    assert fast["labels"]["severity"] == "page"
    assert "rate1h" in fast["expr"] and "rate5m" in fast["expr"] and "0.0144" in fast["expr"]
    slow = by_name["ChoreographSLOSlowBurn"]
    assert slow["labels"]["severity"] == "ticket"
    assert "rate6h" in slow["expr"] and "rate30m" in slow["expr"] and "0.006" in slow["expr"]
    budget = by_name["ChoreographSLOBudgetBurn"]
    assert "rate3d" in budget["expr"] and "rate6h" in budget["expr"] and "0.001" in budget["expr"]
    assert [a.burn_rate for a in BURN_ALERTS] == [14.4, 6.0, 1.0]


def test_generated_rules_pass_promtool(tmp_path: Path) -> None:
    tool = promtool()
    if tool is None:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    path = tmp_path / "rules.yml"
    path.write_text(prometheus_rules(SLOS, app_name="shop"))
    result = subprocess.run([tool, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_fast_burn_pages_in_a_promtool_unit_test(tmp_path: Path) -> None:
    tool = promtool()
    if tool is None:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    # Given the rules and a group dead-lettering 10% of its events (100x the 0.1% budget)
    (tmp_path / "rules.yml").write_text(prometheus_rules(SLOS[:1], app_name="shop"))
    fast = next(
        r
        for g in rule_groups(SLOS[:1], app_name="shop")["groups"]
        for r in g["rules"]
        if r.get("alert") == "ChoreographSLOFastBurn"
    )
    annotations = json.dumps(fast["annotations"])
    (tmp_path / "test.yml").write_text(
        textwrap.dedent(
            f"""\
            rule_files: [rules.yml]
            evaluation_interval: 1m
            tests:
              - interval: 1m
                input_series:
                  - series: 'choreograph_events_handled_total{{group="g",outcome="success"}}'
                    values: '0+90x120'
                  - series: 'choreograph_events_handled_total{{group="g",outcome="dead_letter"}}'
                    values: '0+10x120'
                alert_rule_test:
                  - eval_time: 70m
                    alertname: ChoreographSLOFastBurn
                    exp_alerts:
                      - exp_labels: {{severity: page, slo: handling, slo_kind: success_rate, app: shop}}
                        exp_annotations: {annotations}
            """
        )
    )
    # When promtool evaluates it, then the page fires
    result = subprocess.run(
        [tool, "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- Grafana dashboards ---------------------------------------------------------------


def test_dashboards_reference_only_registered_metrics_and_recorded_rules() -> None:
    # Given the metrics an App registers and the rules recorded for its SLOs
    app = App("shop", broker=MemoryBroker())
    app.declare(*SLOS)
    registered = sample_names(Metrics(app).family_names())
    recorded = {r["record"] for g in rule_groups(SLOS)["groups"] for r in g["rules"] if "record" in r}
    # When the dashboards are generated
    for stem, model in dashboards(SLOS, "shop").items():
        # Then each is valid JSON with panels whose queries name only those series
        model = json.loads(json.dumps(model))
        assert model["panels"], stem
        exprs = queries(model)
        assert exprs, stem
        for expr in exprs:
            metrics = set(re.findall(r"\bchoreograph_[a-z0-9_]+", expr))
            rules = set(re.findall(r"\bchoreograph:[a-z0-9_:]+", expr))
            assert metrics <= registered, (stem, expr, metrics - registered)
            assert rules <= recorded, (stem, expr, rules - recorded)


# -- CLI ----------------------------------------------------------------------------------


@pytest.fixture
def app_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"slo_app_{abs(hash(tmp_path)) % 10**8}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """\
            from choreograph import App
            from choreograph.observe.slo import SLO

            app = App("shop", broker="memory://")
            app.declare(
                SLO.success_rate("handling", target=0.999),
                SLO.latency("fast", event_types=["shop.order.completed"], threshold=5.0, target=0.99),
            )
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return f"{name}:app"


def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_export_commands_write_rules_and_dashboards(app_module: str, tmp_path: Path) -> None:
    runner = CliRunner()
    rules = tmp_path / "out" / "rules.yml"
    rules.parent.mkdir()
    result = runner.invoke(cli(), ["export", "prometheus-rules", app_module, "-o", str(rules)])
    assert result.exit_code == 0, result.output
    assert "ChoreographSLOFastBurn" in rules.read_text()
    result = runner.invoke(cli(), ["export", "grafana", app_module, "-o", str(tmp_path / "dash")])
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in (tmp_path / "dash").iterdir())
    assert files == ["shop-debug.json", "shop-executive.json", "shop-on-call.json"]
    for path in (tmp_path / "dash").iterdir():
        assert json.loads(path.read_text())["panels"]


def test_slo_command_prints_every_slo_even_without_data(app_module: str) -> None:
    result = CliRunner().invoke(cli(), ["slo", app_module], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "handling" in result.output and "fast" in result.output
    assert "burn rate" in result.output


def test_slo_command_lists_every_slo_as_json(app_module: str) -> None:
    # Given an app declaring two SLOs and a broker without data
    result = CliRunner().invoke(cli(), ["slo", app_module, "--json"])
    assert result.exit_code == 0, result.output
    # Then each SLO is one JSON document: its target, window, SLI (none yet) and every window's figures
    docs = [json.loads(line) for line in result.output.splitlines()]
    assert [d["name"] for d in docs] == ["handling", "fast"]
    handling = docs[0]
    assert handling["kind"] == "success_rate" and handling["target"] == 0.999
    assert handling["sli"] is None and handling["budget_remaining"] is None
    assert handling["windows"] and all(w["valid"] == 0 and w["burn_rate"] is None for w in handling["windows"])
