"""Operational alerts: broker, dead letters, lag, flows, schema, crashes, parking, signatures, replays.

Each :class:`OperationalAlert` is one alert name with its severity and
runbook; rules about consumer groups or flows are emitted once per owner
scope (:func:`~choreograph.observe.alerting.group_scopes`,
:func:`~choreograph.observe.alerting.flow_scopes`) so each copy carries its
owner's labels. Metrics come from :mod:`choreograph.observe.metrics`, the flow
collector (``choreograph_flow_instances``) and the replay tool
(``choreograph_replay_running{group}``, 1 while a replay feeds the group).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from choreograph.observe.alerting import (
    INFO,
    PAGE,
    TICKET,
    AlertSettings,
    Scope,
    flow_scopes,
    group_scopes,
    selector,
)

BROKER_UP: Final = "choreograph_broker_up"
DEAD_LETTERS_OPEN: Final = "choreograph_dead_letters_open"
LAG_SECONDS: Final = "choreograph_consumer_lag_seconds"
FLOW_INSTANCES: Final = "choreograph_flow_instances"
SCHEMA_ERRORS: Final = "choreograph_schema_validation_errors_total"
CONSUMER_CRASHES: Final = "choreograph_consumer_crashes"
DEAD_LETTERED: Final = "choreograph_dead_letters_total"
DEAD_LETTERS_PARKED: Final = "choreograph_dead_letters_parked_total"
REPLAY_RUNNING: Final = "choreograph_replay_running"
"""Set by the replay tool: 1 while a replay or reset feeds ``group``, else 0 (agreed name)."""
OUTBOX_AGE: Final = "choreograph_outbox_oldest_age_seconds"
RELAY_ROUND: Final = "choreograph_outbox_relay_last_round_timestamp_seconds"
"""Both set by an outbox relay (choreograph.outbox.metrics): per relay instance."""
PUBLISH_BUCKETS: Final = "choreograph_publish_duration_seconds_bucket"
BROKER_FIGURE: Final = "choreograph_broker_"
"""Publish latency and the broker's own figures (choreograph.observe.broker_health)."""
PUBLISH_SLOW: Final = 1.0
"""Seconds at p99 above which publishes are slow: the broker is overloaded before consumers lag."""
RELAY_STUCK: Final = 300.0
"""Seconds an event may wait in an outbox, or a relay go without finishing a round, before it is stuck."""

_SECURITY: Final = 'reason=~"signature|unauthorized"'
_STUCK: Final = 'state="stuck"'
_OWED: Final = 'state=~"compensation_missing|compensation_failed"'

CRASH_LOOP: Final = 3
"""Consumer restarts within 15 minutes that make a crash loop (one restart heals itself)."""


@dataclass(frozen=True, slots=True)
class OperationalAlert:
    """One operational alert: ``expr`` builds its PromQL from a matcher (empty: everything).

    ``scope`` says what the matcher selects and how the rule is split by owner:
    ``group`` (consumer groups), ``flow`` (declared flows) or ``app`` (not split).
    """

    name: str
    severity: str
    for_: str
    expr: Callable[[str, AlertSettings], str]
    summary: str
    description: Callable[[AlertSettings], str]
    scope: str = "group"


def _lag(scope: str, s: AlertSettings) -> str:
    # Quiet while a replay feeds the group: its lag is the replay's backlog, not an incident.
    replaying = f"max by (group) ({REPLAY_RUNNING}{selector(scope)}) == 1"
    return f"max by (group, topic) ({LAG_SECONDS}{selector(scope)}) > {s.lag_seconds:g} unless on (group) ({replaying})"


def _degraded(scope: str, s: AlertSettings) -> str:
    b = BROKER_FIGURE
    return (
        f"max by (topic) ({b}kafka_partitions_without_leader) > 0"
        f" or max(increase({b}redis_evicted_keys[15m])) > 0"
        f" or max({b}nats_jetstream_storage_bytes / {b}nats_jetstream_storage_max_bytes) > 0.9"
    )


OPERATIONAL_ALERTS: Final = (
    OperationalAlert(
        "ChoreographBrokerDown",
        PAGE,
        "2m",
        lambda scope, s: f"max({BROKER_UP}) == 0",
        "No worker can reach the broker",
        lambda s: (
            "Every worker's last scrape failed to reach the broker: nothing is consumed or published."
            " Run: choreograph topics (exit code 3 means unreachable)."
        ),
        scope="app",
    ),
    OperationalAlert(
        "ChoreographPublishSlow",
        TICKET,
        "10m",
        lambda scope, s: (
            f"histogram_quantile(0.99, sum by (le, topic) (rate({PUBLISH_BUCKETS}[5m]))) > {PUBLISH_SLOW:g}"
        ),
        "Publishes to {{ $labels.topic }} are slow",
        lambda s: (
            f"Publishes to this topic took more than {PUBLISH_SLOW:g}s at p99 for 10 minutes: the broker is"
            " overloaded or far away; consumers will lag next. Run: choreograph topics"
        ),
        scope="app",
    ),
    OperationalAlert(
        "ChoreographBrokerDegraded",
        PAGE,
        "5m",
        _degraded,
        "The broker is degraded",
        lambda s: (
            "Kafka partitions have no leader (nothing can be written to them), Redis evicts keys (log records"
            " or state are being lost: set maxmemory-policy noeviction), or JetStream storage is over 90% of its"
            " limit. See the broker panels of the debug dashboard."
        ),
        scope="app",
    ),
    OperationalAlert(
        "ChoreographDeadLettersOpen",
        TICKET,
        "10m",
        lambda scope, s: f"max by (group, reason) ({DEAD_LETTERS_OPEN}{selector(scope)}) > 0",
        "Group {{ $labels.group }} has {{ $value }} open dead letters ({{ $labels.reason }})",
        lambda s: (
            "Events this group gave up on wait for an operator. Run: choreograph dlq list --group {{ $labels.group }}"
        ),
    ),
    OperationalAlert(
        "ChoreographConsumerLagHigh",
        TICKET,
        "10m",
        _lag,
        "Group {{ $labels.group }} is {{ $value | humanizeDuration }} behind on {{ $labels.topic }}",
        lambda s: (
            f"The oldest record the group has not handled is older than {s.lag_seconds:g}s"
            " (quiet while a replay feeds the group). Run: choreograph lag --group {{ $labels.group }} --partitions"
        ),
    ),
    OperationalAlert(
        "ChoreographFlowsStuck",
        PAGE,
        "5m",
        lambda scope, s: f"max by (flow) ({FLOW_INSTANCES}{selector(_STUCK, scope)}) > 0",
        "{{ $value }} {{ $labels.flow }} flows are stuck past their deadline",
        lambda s: (
            "Business processes started and did not finish in time: customers are waiting." + s.app_command("flows")
        ),
        scope="flow",
    ),
    OperationalAlert(
        "ChoreographCompensationMissing",
        PAGE,
        "5m",
        lambda scope, s: f"max by (flow, state) ({FLOW_INSTANCES}{selector(_OWED, scope)}) > 0",
        "{{ $value }} {{ $labels.flow }} flows owe a compensation ({{ $labels.state }})",
        lambda s: (
            "A step failed after an earlier one took effect, and its undo did not happen in time or"
            " was dead-lettered (stock held, money taken)." + s.app_command("flows")
        ),
        scope="flow",
    ),
    OperationalAlert(
        "ChoreographSchemaViolations",
        TICKET,
        "1m",
        lambda scope, s: f"sum by (group) (increase({SCHEMA_ERRORS}{selector(scope)}[15m])) > 0",
        "Group {{ $labels.group }} received events that break its schema",
        lambda s: (
            "Events did not match the handler's model and were dead-lettered (reason schema)."
            " Run: choreograph dlq list --group {{ $labels.group }}"
        ),
    ),
    OperationalAlert(
        "ChoreographConsumerCrashLoop",
        PAGE,
        "0m",
        lambda scope, s: f"sum by (group) (increase({CONSUMER_CRASHES}{selector(scope)}[15m])) >= {CRASH_LOOP}",
        "The consumer of {{ $labels.group }} keeps crashing",
        lambda s: (
            f"The runtime restarted this group's consumer {CRASH_LOOP} or more times in 15 minutes"
            " (not a handler error: the consumer loop itself failed). Check the workers' logs."
        ),
    ),
    OperationalAlert(
        "ChoreographDeadLettersParked",
        TICKET,
        "10m",
        lambda scope, s: f"sum by (group) (increase({DEAD_LETTERS_PARKED}{selector(scope)}[15m])) > 0",
        "Group {{ $labels.group }} cannot store its dead letters: records are parked",
        lambda s: (
            "The broker could not store dead letters of this group (too large, or the store fails), so the"
            " records are kept and handed back later instead: nothing is lost, but they fail again and again."
            " Check the workers' logs. Run: choreograph dlq groups"
        ),
    ),
    OperationalAlert(
        "ChoreographSignatureFailures",
        PAGE,
        "0m",
        lambda scope, s: f"sum by (group, reason) (increase({DEAD_LETTERED}{selector(_SECURITY, scope)}[15m])) > 0",
        "Group {{ $labels.group }} refused events that fail verification ({{ $labels.reason }})",
        lambda s: (
            "Events arrived unsigned, wrongly signed, altered, or signed by a key not allowed to publish them;"
            " they were dead-lettered, never handled. A forged or tampered event, or a key rotation gone wrong."
            " Run: choreograph dlq list --group {{ $labels.group }}"
        ),
    ),
    OperationalAlert(
        "ChoreographReplayRunning",
        INFO,
        "0m",
        lambda scope, s: f"max by (group) ({REPLAY_RUNNING}{selector(scope)}) == 1",
        "A replay is feeding group {{ $labels.group }}",
        lambda s: "Informational: lag alerts of this group are inhibited while it runs.",
    ),
    OperationalAlert(
        "ChoreographOutboxRelayStuck",
        PAGE,
        "5m",
        lambda scope, s: (
            f"max by (instance) ({OUTBOX_AGE}) > {RELAY_STUCK:g}"
            f" or max by (instance) (time() - {RELAY_ROUND}) > {RELAY_STUCK:g}"
        ),
        "The outbox relay {{ $labels.instance }} is stuck",
        lambda s: (
            f"Committed events have waited in a service's outbox for over {RELAY_STUCK:g}s, or the relay has not"
            " finished a round for as long: downstream services do not see them."
            " Run: choreograph outbox status --db URL"
        ),
        scope="app",
    ),
)


def operational_rules(settings: AlertSettings) -> list[dict[str, Any]]:
    """Return the operational alerting rules, split by owner for per-group and per-flow alerts."""
    rules: list[dict[str, Any]] = []
    scopes = {
        "group": group_scopes(settings.owners),
        "flow": flow_scopes(settings.flow_owners),
        "app": [Scope("", {})],
    }
    for alert in OPERATIONAL_ALERTS:
        for scope in scopes[alert.scope]:
            rules.append(
                {
                    "alert": alert.name,
                    "expr": alert.expr(scope.matcher, settings),
                    "for": alert.for_,
                    "labels": {"app": settings.app_name, "severity": alert.severity, **scope.labels},
                    "annotations": {
                        "summary": alert.summary,
                        "description": alert.description(settings),
                        "runbook_url": settings.runbook_url(alert.name),
                    },
                }
            )
    return rules
