"""Prometheus recording and alerting rules for an App: SLO burn rates and operations.

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
(broker down, dead letters, lag in seconds, stuck flows, missing
compensations, schema violations, crash loops, replays) come in a separate
group (:mod:`choreograph.observe.alert_operations`). Every alert carries a
``runbook_url`` annotation and, when the services it is about declare an
owner, that owner's ``team`` / ``oncall`` / ``escalation`` labels
(:mod:`choreograph.observe.alerting`).

The SLIs are computed from :mod:`choreograph.observe.metrics`:

- success rate: ``events_handled_total{outcome="dead_letter"}`` over
  ``outcome=~"success|dead_letter"`` (retries and duplicates are not final);
- latency: the ``end_to_end_latency_seconds`` bucket at the threshold over
  the count (the threshold is added to the histogram's buckets);
- completion: end events published over start events published one
  ``within`` earlier (clamped at 0).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from prometheus_client.utils import floatToGoString

from choreograph.observe.alert_operations import operational_rules
from choreograph.observe.alerting import (
    DEFAULT_RUNBOOK_BASE,
    PAGE,
    TICKET,
    AlertSettings,
    matcher,
    owner_of_groups,
    selector,
)
from choreograph.observe.metrics import END_TO_END, HANDLED, PUBLISHED
from choreograph.observe.slo import COMPLETION, DAY, HOUR, LATENCY, MINUTE, SLO, format_window
from choreograph.observe.yaml_text import to_yaml
from choreograph.schema.topology import Ownership

__all__ = [
    "BURN_ALERTS",
    "ERROR_RATIO",
    "OBJECTIVE",
    "AlertSettings",
    "BurnAlert",
    "alert_names",
    "alert_settings",
    "error_ratio_expr",
    "matcher",
    "prometheus_rules",
    "recorded_name",
    "rule_groups",
    "to_yaml",
]

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
    BurnAlert("ChoreographSLOFastBurn", PAGE, 14.4, HOUR, 5 * MINUTE, "2m"),
    BurnAlert("ChoreographSLOSlowBurn", TICKET, 6.0, 6 * HOUR, 30 * MINUTE, "15m"),
    BurnAlert("ChoreographSLOBudgetBurn", TICKET, 1.0, 3 * DAY, 6 * HOUR, "1h"),
)

RULE_WINDOWS: Final = tuple(sorted({w for a in BURN_ALERTS for w in (a.long_window, a.short_window)}))


def recorded_name(window: float) -> str:
    """Return the recording rule name of the error ratio over ``window`` seconds."""
    return f"{ERROR_RATIO}:rate{format_window(window)}"


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def error_ratio_expr(slo: SLO, window: float) -> str:
    """Return the PromQL expression of ``slo``'s bad/valid ratio over ``window`` seconds."""
    w = format_window(window)
    if slo.kind == LATENCY:
        types = matcher("event_type", slo.event_types)
        le = f'le="{_go_float(slo.threshold or 0.0)}"'
        good = f"sum(rate({END_TO_END}_bucket{selector(types, le)}[{w}]))"
        valid = f"sum(rate({END_TO_END}_count{selector(types)}[{w}]))"
        return f"1 - ({good} / {valid})"
    if slo.kind == COMPLETION:
        ends = f"sum(rate({PUBLISHED}{selector(matcher('event_type', slo.ends))}[{w}]))"
        offset = format_window(slo.within or 0.0)
        starts = f"sum(rate({PUBLISHED}{selector(matcher('event_type', [slo.start or '']))}[{w}] offset {offset}))"
        return f"clamp_min(1 - ({ends} / {starts}), 0)"
    groups = matcher("group", slo.groups)
    bad_outcome, valid_outcomes = 'outcome="dead_letter"', 'outcome=~"success|dead_letter"'
    bad = f"sum(rate({HANDLED}{selector(groups, bad_outcome)}[{w}]))"
    valid = f"sum(rate({HANDLED}{selector(groups, valid_outcomes)}[{w}]))"
    return f"{bad} / {valid}"


def _recording_rules(slos: Sequence[SLO]) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for slo in slos:
        labels = {"slo": slo.name, "slo_kind": slo.kind}
        for window in sorted({*RULE_WINDOWS, slo.window}):
            rules.append({"record": recorded_name(window), "expr": error_ratio_expr(slo, window), "labels": labels})
        rules.append({"record": OBJECTIVE, "expr": f"vector({slo.target!r})", "labels": labels})
    return rules


def _alert_rules(slos: Sequence[SLO], settings: AlertSettings) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for slo in slos:
        budget = slo.error_budget
        # A success-rate SLO over groups of one owner's services goes to that owner; others to the app's route.
        owner = owner_of_groups(settings.owners, slo.groups)
        for alert in BURN_ALERTS:
            threshold = alert.burn_rate * budget
            sel = f'{{slo="{_quote(slo.name)}"}}'
            expr = (
                f"{recorded_name(alert.long_window)}{sel} > {threshold:.6g}"
                f" and {recorded_name(alert.short_window)}{sel} > {threshold:.6g}"
            )
            rules.append(
                {
                    "alert": alert.name,
                    "expr": expr,
                    "for": alert.for_,
                    "labels": {
                        "severity": alert.severity,
                        "slo": slo.name,
                        "app": settings.app_name,
                        **(owner.labels() if owner else {}),
                    },
                    "annotations": {
                        "summary": f"SLO {slo.name} is burning its error budget {alert.burn_rate:g}x too fast",
                        "description": (
                            f"Error ratio over {format_window(alert.long_window)} and "
                            f"{format_window(alert.short_window)} is above {threshold:.4%} "
                            f"({alert.burn_rate:g} x the {budget:.4%} budget of a {slo.target:.4%} target)."
                            f"{settings.app_command('slo')}"
                        ),
                        "runbook_url": settings.runbook_url(alert.name),
                    },
                }
            )
    return rules


def alert_settings(
    *,
    app_name: str = "app",
    app_spec: str | None = None,
    owners: Mapping[str, Ownership] | None = None,
    runbook_base: str = DEFAULT_RUNBOOK_BASE,
    lag_seconds: float = 60.0,
    flow_owners: Mapping[str, Ownership] | None = None,
) -> AlertSettings:
    """Build :class:`AlertSettings` from keyword arguments (what the CLI passes)."""
    return AlertSettings(app_name, app_spec, dict(owners or {}), runbook_base, lag_seconds, dict(flow_owners or {}))


def rule_groups(slos: Sequence[SLO], *, settings: AlertSettings | None = None, **options: Any) -> dict[str, Any]:
    """Return the rule file as data: SLO recording rules, burn-rate alerts, operational alerts.

    ``options`` are :func:`alert_settings`'s keywords, used when ``settings`` is not given.
    """
    settings = settings or alert_settings(**options)
    app_name = settings.app_name
    groups: list[dict[str, Any]] = []
    if slos:
        groups.append(
            {"name": f"choreograph-{app_name}-slo-records", "interval": "30s", "rules": _recording_rules(slos)}
        )
        groups.append({"name": f"choreograph-{app_name}-slo-alerts", "rules": _alert_rules(slos, settings)})
    groups.append({"name": f"choreograph-{app_name}-operations", "rules": operational_rules(settings)})
    return {"groups": groups}


def alert_names(rules: Mapping[str, Any]) -> set[str]:
    """Every alert name in a rule file given as data (:func:`rule_groups`)."""
    return {rule["alert"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule}


def prometheus_rules(slos: Sequence[SLO], *, settings: AlertSettings | None = None, **options: Any) -> str:
    """Return the rule file as YAML, ready for ``promtool check rules`` and Prometheus."""
    settings = settings or alert_settings(**options)
    header = (
        f"# Generated by `choreograph export prometheus-rules` for app {settings.app_name!r}.\n"
        "# Multi-window, multi-burn-rate SLO alerts (Google SRE workbook) and operational alerts,\n"
        "# each with a runbook_url. Do not edit by hand.\n"
    )
    return header + to_yaml(rule_groups(slos, settings=settings))
