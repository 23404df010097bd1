"""Grafana dashboards (JSON model) built on the metrics and SLO recording rules.

Three dashboards, each for one audience:

- **executive**: is the business flowing? SLO compliance and error budget,
  events completed, end-to-end latency;
- **on-call**: what is burning? burn rates against the alert thresholds,
  dead letters, consumer lag, retries, broker health;
- **debug**: where exactly? per consumer group outcomes, handler duration,
  duplicates, schema errors, lag per partition, replay progress.

Every panel queries a ``${datasource}`` Prometheus variable, and references
only metrics that :class:`~choreograph.observe.metrics.Metrics` registers or
rules that :mod:`choreograph.observe.alerts` records.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final

from choreograph.observe.alerts import BURN_ALERTS, OBJECTIVE, recorded_name
from choreograph.observe.broker_health import PREFIX as BROKER_FIGURE
from choreograph.observe.broker_health import PUBLISH_DURATION, PUBLISH_FAILURES
from choreograph.observe.metrics import (
    BROKER_UP,
    DEAD_LETTERED,
    DEAD_LETTERS_OPEN,
    DUPLICATES,
    END_TO_END,
    HANDLED,
    HANDLER_DURATION,
    LAG,
    LAG_SECONDS,
    PUBLISHED,
    REPLAY_RATIO,
    SCHEMA_ERRORS,
)
from choreograph.observe.slo import SLO

SCHEMA_VERSION: Final = 39
_DATASOURCE: Final = {"type": "prometheus", "uid": "${datasource}"}
_WIDTH: Final = 24


class _Board:
    """Lays panels out left to right, top to bottom, on Grafana's 24-column grid."""

    def __init__(self, title: str, uid: str, app_name: str) -> None:
        self.title, self.uid, self.app_name = title, uid, app_name
        self.panels: list[dict[str, Any]] = []
        self._x = self._y = self._row_height = 0

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append(
            {
                "id": len(self.panels) + 1,
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"x": 0, "y": self._y, "w": _WIDTH, "h": 1},
                "panels": [],
            }
        )
        self._y += 1

    def _newline(self) -> None:
        if self._x:
            self._y += self._row_height
            self._x = self._row_height = 0

    def panel(
        self,
        kind: str,
        title: str,
        targets: Sequence[tuple[str, str]],
        *,
        unit: str = "short",
        width: int = 12,
        height: int = 8,
        description: str = "",
        thresholds: Sequence[tuple[float | None, str]] = (),
    ) -> None:
        if self._x + width > _WIDTH:
            self._newline()
        defaults: dict[str, Any] = {"unit": unit}
        if thresholds:
            defaults["thresholds"] = {
                "mode": "absolute",
                "steps": [{"value": value, "color": color} for value, color in thresholds],
            }
        self.panels.append(
            {
                "id": len(self.panels) + 1,
                "type": kind,
                "title": title,
                "description": description,
                "datasource": _DATASOURCE,
                "gridPos": {"x": self._x, "y": self._y, "w": width, "h": height},
                "fieldConfig": {"defaults": defaults, "overrides": []},
                "options": {"legend": {"displayMode": "table", "placement": "bottom"}} if kind == "timeseries" else {},
                "targets": [
                    {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend, "datasource": _DATASOURCE}
                    for i, (expr, legend) in enumerate(targets)
                ],
            }
        )
        self._x += width
        self._row_height = max(self._row_height, height)

    def model(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "title": self.title,
            "tags": ["choreograph", self.app_name],
            "timezone": "utc",
            "editable": True,
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "refresh": "30s",
            "time": {"from": "now-6h", "to": "now"},
            "templating": {
                "list": [
                    {
                        "name": "datasource",
                        "label": "Prometheus",
                        "type": "datasource",
                        "query": "prometheus",
                        "current": {},
                        "hide": 0,
                    }
                ]
            },
            "annotations": {"list": []},
            "panels": self.panels,
        }


def _uid(app_name: str, which: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_-]", "-", f"choreograph-{app_name}-{which}")[:40]


def _slo_sel(slo: SLO) -> str:
    return '{slo="' + slo.name.replace('"', '\\"') + '"}'


def executive(slos: Sequence[SLO], app_name: str = "app") -> dict[str, Any]:
    """Return the executive dashboard: SLO compliance, budget, throughput, end-to-end latency."""
    board = _Board(f"{app_name}: executive overview", _uid(app_name, "executive"), app_name)
    if slos:
        board.row("Service level objectives")
        for slo in slos:
            ratio = f"{recorded_name(slo.window)}{_slo_sel(slo)}"
            board.panel(
                "stat",
                f"{slo.name}: SLI ({slo.target:.3%} target)",
                [(f"1 - {ratio}", slo.name)],
                unit="percentunit",
                width=6,
                height=5,
                description=slo.description or f"{slo.kind} over the {slo.window / 86400:g}-day window",
                thresholds=[(None, "red"), (slo.target, "green")],
            )
            board.panel(
                "stat",
                f"{slo.name}: error budget left",
                [(f"1 - ({ratio} / (1 - {OBJECTIVE}{_slo_sel(slo)}))", slo.name)],
                unit="percentunit",
                width=6,
                height=5,
                thresholds=[(None, "red"), (0.25, "orange"), (0.5, "green")],
            )
    board.row("Flow")
    board.panel(
        "timeseries",
        "Events published per second, by type",
        [(f"sum by (event_type) (rate({PUBLISHED}[5m]))", "{{event_type}}")],
        unit="ops",
    )
    board.panel(
        "timeseries",
        "End-to-end latency (correlation start to event), p50 / p99",
        [
            (f"histogram_quantile(0.5, sum by (le, event_type) (rate({END_TO_END}_bucket[5m])))", "p50 {{event_type}}"),
            (
                f"histogram_quantile(0.99, sum by (le, event_type) (rate({END_TO_END}_bucket[5m])))",
                "p99 {{event_type}}",
            ),
        ],
        unit="s",
    )
    board.panel(
        "stat",
        "Handling success rate (1h)",
        [
            (
                f'sum(rate({HANDLED}{{outcome="success"}}[1h])) / '
                f'sum(rate({HANDLED}{{outcome=~"success|dead_letter"}}[1h]))',
                "success",
            )
        ],
        unit="percentunit",
        width=8,
        height=5,
    )
    board.panel(
        "stat",
        "Dead letters waiting",
        [(f"sum({DEAD_LETTERS_OPEN})", "open")],
        width=8,
        height=5,
        thresholds=[(None, "green"), (1, "orange")],
    )
    board.panel(
        "stat",
        "Consumer lag (records)",
        [(f"sum({LAG})", "lag")],
        width=8,
        height=5,
    )
    return board.model()


def on_call(slos: Sequence[SLO], app_name: str = "app") -> dict[str, Any]:
    """Return the on-call dashboard: burn rates, dead letters, lag, retries, broker health."""
    board = _Board(f"{app_name}: on-call", _uid(app_name, "on-call"), app_name)
    if slos:
        board.row("Error budget burn (alert fires when long and short windows both exceed the line)")
        for slo in slos:
            sel = _slo_sel(slo)
            targets = [
                (f"{recorded_name(window)}{sel} / (1 - {OBJECTIVE}{sel})", f"burn {label}")
                for window, label in sorted(
                    {(a.long_window, _label(a.long_window)) for a in BURN_ALERTS}
                    | {(a.short_window, _label(a.short_window)) for a in BURN_ALERTS}
                )
            ]
            board.panel(
                "timeseries",
                f"{slo.name}: burn rate",
                targets,
                unit="x",
                thresholds=[(None, "green"), *((alert.burn_rate, "red") for alert in BURN_ALERTS[:1])],
                description="1x spends exactly the budget over the SLO window; 14.4x pages, 6x and 1x open tickets.",
            )
    board.row("Failures")
    board.panel(
        "timeseries",
        "Dead letters waiting, by group and reason",
        [(f"sum by (group, reason) ({DEAD_LETTERS_OPEN})", "{{group}} {{reason}}")],
    )
    board.panel(
        "timeseries",
        "Retries and dead letters per second, by group",
        [
            (f'sum by (group) (rate({HANDLED}{{outcome="retry"}}[5m]))', "retry {{group}}"),
            (f'sum by (group) (rate({HANDLED}{{outcome="dead_letter"}}[5m]))', "dead letter {{group}}"),
        ],
        unit="ops",
    )
    board.row("Throughput and health")
    board.panel(
        "timeseries",
        "Consumer lag by group: oldest unhandled record's age",
        [(f"max by (group) ({LAG_SECONDS})", "{{group}}")],
        unit="s",
        description="ChoreographConsumerLagHigh fires when this stays above its threshold for 10 minutes.",
    )
    board.panel(
        "stat",
        "Broker reachable",
        [(f"min({BROKER_UP})", "up")],
        width=6,
        thresholds=[(None, "red"), (1, "green")],
    )
    board.panel(
        "timeseries",
        "Handler p99 duration by group",
        [(f"histogram_quantile(0.99, sum by (le, group) (rate({HANDLER_DURATION}_bucket[5m])))", "{{group}}")],
        unit="s",
        width=6,
    )
    return board.model()


def _label(window: float) -> str:
    return recorded_name(window).rsplit(":", 1)[1].removeprefix("rate")


def debug(app_name: str = "app") -> dict[str, Any]:
    """Return the debug dashboard: everything per consumer group and partition."""
    board = _Board(f"{app_name}: debug", _uid(app_name, "debug"), app_name)
    board.row("Per consumer group")
    board.panel(
        "timeseries",
        "Handled per second by group and outcome",
        [(f"sum by (group, outcome) (rate({HANDLED}[1m]))", "{{group}} {{outcome}}")],
        unit="ops",
        width=24,
    )
    board.panel(
        "timeseries",
        "Handler duration p50 / p99 by group",
        [
            (f"histogram_quantile(0.5, sum by (le, group) (rate({HANDLER_DURATION}_bucket[1m])))", "p50 {{group}}"),
            (f"histogram_quantile(0.99, sum by (le, group) (rate({HANDLER_DURATION}_bucket[1m])))", "p99 {{group}}"),
        ],
        unit="s",
    )
    board.panel(
        "timeseries",
        "Mean handler duration by group",
        [
            (
                f"sum by (group) (rate({HANDLER_DURATION}_sum[1m]))"
                f" / sum by (group) (rate({HANDLER_DURATION}_count[1m]))",
                "{{group}}",
            )
        ],
        unit="s",
    )
    board.panel(
        "timeseries",
        "Dead-lettered per second by group and reason",
        [(f"sum by (group, reason) (rate({DEAD_LETTERED}[5m]))", "{{group}} {{reason}}")],
        unit="ops",
    )
    board.panel(
        "timeseries",
        "Duplicates dropped and schema errors per second",
        [
            (f"sum by (group) (rate({DUPLICATES}[5m]))", "duplicate {{group}}"),
            (f"sum by (group) (rate({SCHEMA_ERRORS}[5m]))", "schema {{group}}"),
        ],
        unit="ops",
    )
    board.row("Log")
    board.panel(
        "timeseries",
        "Lag per partition (records)",
        [(f"sum by (group, topic, partition) ({LAG})", "{{group}} {{topic}}/{{partition}}")],
    )
    board.panel(
        "timeseries",
        "Lag per partition (age of the oldest unhandled record)",
        [(f"max by (group, topic, partition) ({LAG_SECONDS})", "{{group}} {{topic}}/{{partition}}")],
        unit="s",
    )
    board.panel(
        "timeseries",
        "Published per second by service and topic",
        [(f"sum by (service, topic) (rate({PUBLISHED}[1m]))", "{{service}} -> {{topic}}")],
        unit="ops",
    )
    board.panel(
        "bargauge",
        "Replay progress",
        [(f"max by (replay) ({REPLAY_RATIO})", "{{replay}}")],
        unit="percentunit",
        width=24,
        height=6,
    )
    _broker_panels(board)
    return board.model()


def _broker_panels(board: _Board) -> None:
    """Publish latency (the broker's overload signal) and the broker's own figures, per backend."""
    board.row("Broker")
    rate = f"sum by (le, topic) (rate({PUBLISH_DURATION}_bucket[5m]))"
    board.panel(
        "timeseries",
        "Publish latency p50 / p99 by topic",
        [(f"histogram_quantile(0.5, {rate})", "p50 {{topic}}"), (f"histogram_quantile(0.99, {rate})", "p99 {{topic}}")],
        unit="s",
    )
    board.panel(
        "timeseries",
        "Failed publishes per second by topic and reason",
        [(f"sum by (topic, reason) (rate({PUBLISH_FAILURES}[5m]))", "{{topic}} {{reason}}")],
        unit="ops",
    )
    b = BROKER_FIGURE
    board.panel(
        "timeseries",
        "Broker memory and storage",
        [
            (f"max({b}redis_memory_used_bytes)", "redis used"),
            (f"max({b}redis_memory_max_bytes) > 0", "redis maxmemory"),
            (f"max({b}nats_jetstream_memory_bytes)", "jetstream memory"),
            (f"max({b}nats_jetstream_storage_bytes)", "jetstream storage"),
            (f"max({b}nats_jetstream_storage_max_bytes)", "jetstream storage limit"),
            (f"max({b}sqlite_file_bytes)", "sqlite file"),
            (f"max({b}sqlite_wal_bytes)", "sqlite WAL"),
        ],
        unit="bytes",
    )
    board.panel(
        "timeseries",
        "Clients, slow consumers, evictions",
        [
            (f"max({b}redis_connected_clients)", "redis clients"),
            (f"max by (server) ({b}nats_server_connections)", "nats connections {{server}}"),
            (f"max by (server) (increase({b}nats_server_slow_consumers[5m]))", "nats slow consumers {{server}}"),
            (f"max(increase({b}redis_evicted_keys[5m]))", "redis evicted keys"),
        ],
    )
    board.panel(
        "timeseries",
        "SQLite WAL: frames and frames checkpointed",
        [(f"max({b}sqlite_wal_frames)", "frames"), (f"max({b}sqlite_wal_checkpointed_frames)", "checkpointed")],
    )
    board.panel(
        "timeseries",
        "Kafka: brokers, partitions without a leader, under-replicated",
        [
            (f"max({b}kafka_brokers)", "brokers"),
            (f"sum by (topic) (max by (topic) ({b}kafka_partitions_without_leader)) > 0", "leaderless {{topic}}"),
            (
                f"sum by (topic) (max by (topic) ({b}kafka_partitions_under_replicated)) > 0",
                "under-replicated {{topic}}",
            ),
        ],
    )


def dashboards(slos: Sequence[SLO], app_name: str = "app") -> dict[str, dict[str, Any]]:
    """Return file stem -> dashboard model for the three dashboards."""
    return {
        "executive": executive(slos, app_name),
        "on-call": on_call(slos, app_name),
        "debug": debug(app_name),
    }


def queries(dashboard: dict[str, Any]) -> list[str]:
    """Return every PromQL expression in a dashboard model."""
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
