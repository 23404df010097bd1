"""Prometheus recording and alerting rules for an App's SLOs.

For every declared :class:`~choreograph.observe.slo.SLO` the rules record the
error ratio (bad / valid events) over the burn-rate windows and the compliance
window, as ``choreograph:slo_error_ratio:rate<window>{slo="<name>"}``, and
alert with multiple windows and burn rates (Google SRE workbook, "Alerting on
SLOs")::

    severity  burn rate  long window  short window   budget spent when it fires
    page      14.4x      1h           5m             2% of a 30-day budget
    ticket    6x         6h           30m            5%
    ticket    1x         3d           6h             10%

Both windows must burn: the long one proves it is significant, the short one
that it is still happening (so the alert resets quickly). Operational alerts
(broker down, open dead letters, growing lag) come in a separate group.

The SLIs are computed from :mod:`choreograph.observe.metrics`:

- success rate: ``events_handled_total{outcome="dead_letter"}`` over
  ``outcome=~"success|dead_letter"`` (retries and duplicates are not final);
- latency: the ``end_to_end_latency_seconds`` bucket at the threshold over
  the count (the threshold is added to the histogram's buckets);
- completion: end events published over start events published one
  ``within`` earlier (clamped at 0).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson
from prometheus_client.utils import floatToGoString

from choreograph.observe.metrics import END_TO_END, HANDLED, PUBLISHED
from choreograph.observe.slo import COMPLETION, DAY, HOUR, LATENCY, MINUTE, SLO, format_window

_go_float: Callable[[float], str] = floatToGoString
"""Format a bucket bound exactly as prometheus-client writes its ``le`` label."""

ERROR_RATIO: Final = "choreograph:slo_error_ratio"
OBJECTIVE: Final = "choreograph:slo_objective"


@dataclass(frozen=True, slots=True)
class BurnAlert:
    """One multi-window burn-rate alert."""

    name: str
    severity: str
    burn_rate: float
    long_window: float
    short_window: float
    for_: str


BURN_ALERTS: Final = (
    BurnAlert("ChoreographSLOFastBurn", "page", 14.4, HOUR, 5 * MINUTE, "2m"),
    BurnAlert("ChoreographSLOSlowBurn", "ticket", 6.0, 6 * HOUR, 30 * MINUTE, "15m"),
    BurnAlert("ChoreographSLOBudgetBurn", "ticket", 1.0, 3 * DAY, 6 * HOUR, "1h"),
)

RULE_WINDOWS: Final = tuple(sorted({w for a in BURN_ALERTS for w in (a.long_window, a.short_window)}))


def recorded_name(window: float) -> str:
    """Return the recording rule name of the error ratio over ``window`` seconds."""
    return f"{ERROR_RATIO}:rate{format_window(window)}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def matcher(label: str, values: Sequence[str]) -> str:
    """Return a PromQL label matcher for one or several exact values (empty for none)."""
    if not values:
        return ""
    if len(values) == 1:
        return f'{label}="{_escape(values[0])}"'
    return f'{label}=~"{_escape("|".join(re.escape(v) for v in values))}"'


def _selector(*matchers: str) -> str:
    inner = ",".join(m for m in matchers if m)
    return "{" + inner + "}" if inner else ""


def error_ratio_expr(slo: SLO, window: float) -> str:
    """Return the PromQL expression of ``slo``'s bad/valid ratio over ``window`` seconds."""
    w = format_window(window)
    if slo.kind == LATENCY:
        types = matcher("event_type", slo.event_types)
        le = f'le="{_go_float(slo.threshold or 0.0)}"'
        good = f"sum(rate({END_TO_END}_bucket{_selector(types, le)}[{w}]))"
        valid = f"sum(rate({END_TO_END}_count{_selector(types)}[{w}]))"
        return f"1 - ({good} / {valid})"
    if slo.kind == COMPLETION:
        ends = f"sum(rate({PUBLISHED}{_selector(matcher('event_type', slo.ends))}[{w}]))"
        offset = format_window(slo.within or 0.0)
        starts = f"sum(rate({PUBLISHED}{_selector(matcher('event_type', [slo.start or '']))}[{w}] offset {offset}))"
        return f"clamp_min(1 - ({ends} / {starts}), 0)"
    groups = matcher("group", slo.groups)
    bad_outcome, valid_outcomes = 'outcome="dead_letter"', 'outcome=~"success|dead_letter"'
    bad = f"sum(rate({HANDLED}{_selector(groups, bad_outcome)}[{w}]))"
    valid = f"sum(rate({HANDLED}{_selector(groups, valid_outcomes)}[{w}]))"
    return f"{bad} / {valid}"


def _recording_rules(slos: Sequence[SLO]) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for slo in slos:
        labels = {"slo": slo.name, "slo_kind": slo.kind}
        for window in sorted({*RULE_WINDOWS, slo.window}):
            rules.append({"record": recorded_name(window), "expr": error_ratio_expr(slo, window), "labels": labels})
        rules.append({"record": OBJECTIVE, "expr": f"vector({slo.target!r})", "labels": labels})
    return rules


def _alert_rules(slos: Sequence[SLO], app_name: str) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for slo in slos:
        budget = slo.error_budget
        for alert in BURN_ALERTS:
            threshold = alert.burn_rate * budget
            sel = f'{{slo="{_escape(slo.name)}"}}'
            expr = (
                f"{recorded_name(alert.long_window)}{sel} > {threshold:.6g}"
                f" and {recorded_name(alert.short_window)}{sel} > {threshold:.6g}"
            )
            rules.append(
                {
                    "alert": alert.name,
                    "expr": expr,
                    "for": alert.for_,
                    "labels": {"severity": alert.severity, "slo": slo.name, "app": app_name},
                    "annotations": {
                        "summary": f"SLO {slo.name} is burning its error budget {alert.burn_rate:g}x too fast",
                        "description": (
                            f"Error ratio over {format_window(alert.long_window)} and "
                            f"{format_window(alert.short_window)} is above {threshold:.4%} "
                            f"({alert.burn_rate:g} x the {budget:.4%} budget of a {slo.target:.4%} target). "
                            f"Check with: choreograph slo <module>:app; dead letters: choreograph dlq list."
                        ),
                    },
                }
            )
    return rules


def _operational_rules(app_name: str, lag_threshold: int) -> list[dict[str, Any]]:
    labels = {"app": app_name}
    return [
        {
            "alert": "ChoreographBrokerDown",
            "expr": "max(choreograph_broker_up) == 0",
            "for": "2m",
            "labels": {**labels, "severity": "page"},
            "annotations": {"summary": "Workers cannot reach the broker"},
        },
        {
            "alert": "ChoreographDeadLettersOpen",
            "expr": "max by (group, reason) (choreograph_dead_letters_open) > 0",
            "for": "10m",
            "labels": {**labels, "severity": "ticket"},
            "annotations": {
                "summary": "Group {{ $labels.group }} has {{ $value }} open dead letters ({{ $labels.reason }})",
                "description": "Inspect with: choreograph dlq list --group {{ $labels.group }}",
            },
        },
        {
            "alert": "ChoreographConsumerLagHigh",
            "expr": f"max by (group, topic) (sum by (group, topic, partition) (choreograph_consumer_lag_records))"
            f" > {lag_threshold}",
            "for": "10m",
            "labels": {**labels, "severity": "ticket"},
            "annotations": {
                "summary": "Group {{ $labels.group }} is {{ $value }} records behind on {{ $labels.topic }}"
            },
        },
    ]


def rule_groups(slos: Sequence[SLO], *, app_name: str = "app", lag_threshold: int = 1000) -> dict[str, Any]:
    """Return the rule file as data: SLO recording rules, burn-rate alerts, operational alerts."""
    groups: list[dict[str, Any]] = []
    if slos:
        groups.append(
            {"name": f"choreograph-{app_name}-slo-records", "interval": "30s", "rules": _recording_rules(slos)}
        )
        groups.append({"name": f"choreograph-{app_name}-slo-alerts", "rules": _alert_rules(slos, app_name)})
    groups.append({"name": f"choreograph-{app_name}-operations", "rules": _operational_rules(app_name, lag_threshold)})
    return {"groups": groups}


def to_yaml(data: Any, indent: int = 0) -> str:
    """Render plain data (dicts, lists, strings, numbers) as block YAML with JSON-quoted strings."""
    pad = "  " * indent
    if isinstance(data, dict):
        if not data:
            return "{}\n"
        lines = []
        for key, value in data.items():
            if isinstance(value, dict | list) and value:
                lines.append(f"{pad}{key}:\n{to_yaml(value, indent + 1)}")
            else:
                lines.append(f"{pad}{key}: {_scalar(value)}\n")
        return "".join(lines)
    if isinstance(data, list):
        if not data:
            return "[]\n"
        lines = []
        for item in data:
            body = to_yaml(item, indent + 1) if isinstance(item, dict | list) and item else f"{_scalar(item)}\n"
            lines.append(f"{pad}- {body.lstrip()}")
        return "".join(lines)
    return f"{pad}{_scalar(data)}\n"


def _scalar(value: Any) -> str:
    if isinstance(value, dict | list):
        return "{}" if isinstance(value, dict) else "[]"
    if isinstance(value, bool) or value is None or isinstance(value, int | float):
        return orjson.dumps(value).decode()
    return orjson.dumps(str(value)).decode()


def prometheus_rules(slos: Sequence[SLO], *, app_name: str = "app", lag_threshold: int = 1000) -> str:
    """Return the rule file as YAML, ready for ``promtool check rules`` and Prometheus."""
    header = (
        f"# Generated by `choreograph export prometheus-rules` for app {app_name!r}.\n"
        "# Multi-window, multi-burn-rate SLO alerts (Google SRE workbook). Do not edit by hand.\n"
    )
    return header + to_yaml(rule_groups(slos, app_name=app_name, lag_threshold=lag_threshold))
