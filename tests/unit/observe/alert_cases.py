"""promtool unit-test cases for every generated alert: when it must fire, and when it must stay quiet.

Each :class:`AlertCase` becomes two promtool test groups (``firing`` and
``quiet``) in one file evaluated by ``promtool test rules``. The rules are those
of :data:`SLOS` for an app whose ``payment`` service is owned by the payments
team and whose ``notification`` service is unowned, so the cases also prove
which owner labels each alert carries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from choreograph.observe.slo import SLO
from choreograph.schema.topology import Ownership

APP = "shop"
APP_SPEC = "shop.app:app"
OWNERS = {"payment": Ownership("payments", "#payments-oncall", ("payments-lead", "cto"))}
TEAM = {"team": "payments", "oncall": "#payments-oncall", "escalation": "payments-lead -> cto"}
FLOW_OWNERS = {"order": Ownership("storefront", "#storefront-oncall")}  # the order flow's owner
STOREFRONT = {"team": "storefront", "oncall": "#storefront-oncall"}
PAID = "payment.capture"  # a group of the owned service
NOTIFY = "notification.notify"  # a group of an unowned service

SLOS = [
    SLO.success_rate("payments-handled", target=0.999, groups=[PAID]),
    SLO.latency("fast", event_types=["shop.order.completed"], threshold=5.0, target=0.99),
    SLO.completion("finish", start="shop.order.placed", ends=["shop.order.completed"], within=300.0, target=0.995),
]


@dataclass(frozen=True)
class Expected:
    """One alert expected at the evaluation time: its labels, and the value its templates print."""

    labels: dict[str, str]
    value: str = ""


@dataclass(frozen=True)
class AlertCase:
    """Input series that make ``alert`` fire at ``at`` (``firing``), and others that keep it quiet (``quiet``)."""

    alert: str
    firing: dict[str, str]
    at: str
    expected: list[Expected]
    quiet: dict[str, str]
    quiet_at: str = ""
    why_quiet: str = ""


def handled(success_per_min: int, dead_per_min: int, minutes: int) -> dict[str, str]:
    """Counters of group PAID: ``success`` and ``dead_letter`` outcomes growing at these rates."""
    return {
        f'choreograph_events_handled_total{{group="{PAID}",outcome="success"}}': f"0+{success_per_min}x{minutes}",
        f'choreograph_events_handled_total{{group="{PAID}",outcome="dead_letter"}}': f"0+{dead_per_min}x{minutes}",
    }


def burn(severity: str) -> dict[str, str]:
    return {"severity": severity, "slo": "payments-handled", "slo_kind": "success_rate", "app": APP, **TEAM}


CASES = [
    AlertCase(
        "ChoreographSLOFastBurn",
        firing=handled(90, 10, 120),  # 10% dead letters: 100x the 0.1% budget
        at="70m",
        expected=[Expected(burn("page"))],
        quiet=handled(995, 5, 120),  # 0.5%: 5x, below 14.4x
        why_quiet="burning 5x: a ticket at most, never a page",
    ),
    AlertCase(
        "ChoreographSLOSlowBurn",
        firing=handled(990, 10, 480),  # 1%: 10x, above 6x for hours
        at="7h",
        expected=[Expected(burn("ticket"))],
        quiet=handled(995, 5, 480),  # 5x: below 6x
        why_quiet="5x is below the 6x slow-burn line",
    ),
    AlertCase(
        "ChoreographSLOBudgetBurn",
        firing=handled(995, 5, 540),  # 5x: the 1x line over 3d/6h
        at="9h",
        expected=[Expected(burn("ticket"))],
        quiet=handled(9995, 5, 540),  # 0.05%: half the budget
        why_quiet="spending half the budget is on plan",
    ),
    AlertCase(
        "ChoreographBrokerDown",
        firing={'choreograph_broker_up{instance="w1"}': "0x10", 'choreograph_broker_up{instance="w2"}': "0x10"},
        at="5m",
        expected=[Expected({"app": APP, "severity": "page"})],
        quiet={'choreograph_broker_up{instance="w1"}': "0x10", 'choreograph_broker_up{instance="w2"}': "1x10"},
        why_quiet="one worker still reaches the broker",
    ),
    AlertCase(
        "ChoreographPublishSlow",
        firing={  # every publish to shop.orders takes 1 to 2.5 s
            f'choreograph_publish_duration_seconds_bucket{{topic="shop.orders",le="{le}"}}': f"0+{n}x30"
            for le, n in (("0.1", 0), ("1", 0), ("2.5", 100), ("+Inf", 100))
        },
        at="20m",
        expected=[Expected({"app": APP, "severity": "ticket", "topic": "shop.orders"})],
        quiet={
            f'choreograph_publish_duration_seconds_bucket{{topic="shop.orders",le="{le}"}}': f"0+{n}x30"
            for le, n in (("0.1", 100), ("1", 100), ("2.5", 100), ("+Inf", 100))
        },
        why_quiet="publishes take under 0.1 s",
    ),
    AlertCase(
        "ChoreographBrokerDegraded",
        firing={'choreograph_broker_kafka_partitions_without_leader{instance="w1",topic="shop.orders"}': "0 1x10"},
        at="8m",
        expected=[Expected({"app": APP, "severity": "page", "topic": "shop.orders"})],
        quiet={
            'choreograph_broker_kafka_partitions_without_leader{instance="w1",topic="shop.orders"}': "0x10",
            'choreograph_broker_redis_evicted_keys{instance="w1"}': "0x20",
            'choreograph_broker_nats_jetstream_storage_bytes{instance="w1"}': "500x10",
            'choreograph_broker_nats_jetstream_storage_max_bytes{instance="w1"}': "1000x10",
        },
        why_quiet="every partition has a leader, nothing evicted, JetStream storage half full",
    ),
    AlertCase(
        "ChoreographDeadLettersOpen",
        firing={
            f'choreograph_dead_letters_open{{group="{PAID}",reason="error"}}': "3x20",
            f'choreograph_dead_letters_open{{group="{NOTIFY}",reason="schema"}}': "1x20",
        },
        at="15m",
        expected=[
            Expected({"group": PAID, "reason": "error", "app": APP, "severity": "ticket", **TEAM}, "3"),
            Expected({"group": NOTIFY, "reason": "schema", "app": APP, "severity": "ticket"}, "1"),
        ],
        quiet={f'choreograph_dead_letters_open{{group="{PAID}",reason="error"}}': "3x20"},
        quiet_at="5m",
        why_quiet="open for 5 minutes only (the alert waits 10)",
    ),
    AlertCase(
        "ChoreographConsumerLagHigh",
        firing={f'choreograph_consumer_lag_seconds{{group="{PAID}",topic="shop.inventory",partition="0"}}': "120x20"},
        at="15m",
        expected=[
            Expected({"group": PAID, "topic": "shop.inventory", "app": APP, "severity": "ticket", **TEAM}, "120")
        ],
        quiet={
            f'choreograph_consumer_lag_seconds{{group="{PAID}",topic="shop.inventory",partition="0"}}': "120x20",
            f'choreograph_replay_running{{group="{PAID}",replay="r1"}}': "1x20",
        },
        why_quiet="a replay feeds the group: its lag is intended",
    ),
    AlertCase(
        "ChoreographFlowsStuck",
        firing={
            'choreograph_flow_instances{flow="order",state="stuck"}': "4x10",
            'choreograph_flow_instances{flow="signup",state="stuck"}': "1x10",
        },
        at="6m",
        expected=[
            Expected({"flow": "order", "app": APP, "severity": "page", **STOREFRONT}, "4"),
            Expected({"flow": "signup", "app": APP, "severity": "page"}, "1"),  # an unowned flow: the app's route
        ],
        quiet={
            'choreograph_flow_instances{flow="order",state="stuck"}': "0x10",
            'choreograph_flow_instances{flow="order",state="in_flight"}': "50x10",
        },
        why_quiet="flows in flight within their deadline are not stuck",
    ),
    AlertCase(
        "ChoreographCompensationMissing",
        firing={'choreograph_flow_instances{flow="order",state="compensation_failed"}': "2x10"},
        at="6m",
        expected=[
            Expected(
                {"flow": "order", "state": "compensation_failed", "app": APP, "severity": "page", **STOREFRONT}, "2"
            )
        ],
        quiet={
            'choreograph_flow_instances{flow="order",state="compensation_missing"}': "0x10",
            'choreograph_flow_instances{flow="order",state="compensated"}': "7x10",
        },
        why_quiet="every owed compensation happened",
    ),
    AlertCase(
        "ChoreographSchemaViolations",
        firing={f'choreograph_schema_validation_errors_total{{group="{PAID}"}}': "0 0 2 2 2 2 2 2"},
        at="6m",
        expected=[Expected({"group": PAID, "app": APP, "severity": "ticket", **TEAM})],
        quiet={f'choreograph_schema_validation_errors_total{{group="{PAID}"}}': "5x40"},
        quiet_at="30m",
        why_quiet="old violations (before the 15-minute window) do not re-alert",
    ),
    AlertCase(
        "ChoreographConsumerCrashLoop",
        firing={f'choreograph_consumer_crashes{{group="{PAID}",instance="w1"}}': "0 1 2 3 4 4 4"},
        at="6m",
        expected=[Expected({"group": PAID, "app": APP, "severity": "page", **TEAM})],
        quiet={f'choreograph_consumer_crashes{{group="{PAID}",instance="w1"}}': "0 1 1 1 1 1 1"},
        quiet_at="6m",
        why_quiet="one restart heals itself",
    ),
    AlertCase(
        "ChoreographDeadLettersParked",
        firing={f'choreograph_dead_letters_parked_total{{group="{PAID}",instance="w1"}}': "0+1x20"},
        at="15m",
        expected=[Expected({"group": PAID, "app": APP, "severity": "ticket", **TEAM})],
        quiet={f'choreograph_dead_letters_parked_total{{group="{PAID}",instance="w1"}}': "4x40"},
        quiet_at="30m",
        why_quiet="nothing parked in the last 15 minutes",
    ),
    AlertCase(
        "ChoreographSignatureFailures",
        firing={
            f'choreograph_dead_letters_total{{group="{PAID}",reason="signature"}}': "0 0 1 1 1 1",
            f'choreograph_dead_letters_total{{group="{NOTIFY}",reason="unauthorized"}}': "0 0 0 2 2 2",
        },
        at="5m",
        expected=[
            Expected({"group": PAID, "reason": "signature", "app": APP, "severity": "page", **TEAM}),
            Expected({"group": NOTIFY, "reason": "unauthorized", "app": APP, "severity": "page"}),
        ],
        quiet={f'choreograph_dead_letters_total{{group="{PAID}",reason="error"}}': "0 1 2 3 4 5"},
        why_quiet="ordinary handler errors are not a security event",
    ),
    AlertCase(
        "ChoreographReplayRunning",
        firing={f'choreograph_replay_running{{group="{PAID}",replay="r1"}}': "1x5"},
        at="3m",
        expected=[Expected({"group": PAID, "app": APP, "severity": "info", **TEAM})],
        quiet={f'choreograph_replay_running{{group="{PAID}",replay="r1"}}': "0x5"},
        why_quiet="the replay finished",
    ),
    AlertCase(
        "ChoreographOutboxRelayStuck",
        firing={  # the relay's rounds stopped at t=0 while the oldest event ages
            'choreograph_outbox_relay_last_round_timestamp_seconds{instance="r1"}': "0x15",
            'choreograph_outbox_oldest_age_seconds{instance="r1"}': "0+60x15",
        },
        at="12m",
        expected=[Expected({"app": APP, "severity": "page", "instance": "r1"})],
        quiet={
            'choreograph_outbox_relay_last_round_timestamp_seconds{instance="r1"}': "0+60x15",
            'choreograph_outbox_oldest_age_seconds{instance="r1"}': "0x15",
        },
        why_quiet="the relay finishes rounds and nothing waits",
    ),
]

_TEMPLATE = re.compile(r"\{\{\s*(\$labels\.(\w+)|\$value(\s*\|\s*humanizeDuration)?)\s*\}\}")


def expand(text: str, labels: dict[str, str], value: str) -> str:
    """Expand the few template forms the rules use: ``$labels.x``, ``$value``, ``$value | humanizeDuration``."""

    def one(match: re.Match[str]) -> str:
        if match.group(2):
            return labels.get(match.group(2), "")
        if match.group(3):
            seconds = int(float(value))
            return f"{seconds // 60}m {seconds % 60}s" if seconds >= 60 else f"{seconds}s"
        return value

    return _TEMPLATE.sub(one, text)
