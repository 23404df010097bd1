"""What every generated alert shares: settings, runbook links, owner scopes and PromQL quoting.

:class:`AlertSettings` says which app the rules are for, how operators load
it (``MODULE:APP``, quoted in the alert descriptions' commands), who owns
which service, where the runbooks are served and the lag threshold.

Alerts about one consumer group are split by owner: for each distinct
:class:`~choreograph.schema.topology.Ownership` one copy of the rule matches
the groups of the services it owns (``group=~"payment\\..+"``) and carries its
labels (``team``, ``oncall``, ``escalation``); one more copy matches the
groups of unowned services and carries none. Alerts about a declared flow
are split the same way by the flow's owner: the owner of the service that
publishes its start event. Alertmanager routes on ``team``
(:mod:`choreograph.observe.alertmanager`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from choreograph.observe.flows.flow import Flow
from choreograph.schema.topology import Ownership, Topology

DEFAULT_RUNBOOK_BASE: Final = "docs/runbooks"
"""Where runbooks are when no base URL is given: the repository path. Set ``runbook_base``
(``--runbook-base-url``) to where your copy of ``docs/runbooks`` is served."""

PAGE: Final = "page"
TICKET: Final = "ticket"
INFO: Final = "info"
SEVERITIES: Final = (PAGE, TICKET, INFO)
"""``page`` wakes someone; ``ticket`` is for working hours; ``info`` only feeds inhibitions and dashboards."""

RUNBOOKS: Final = {
    "ChoreographSLOFastBurn": "slo-fast-burn",
    "ChoreographSLOSlowBurn": "slo-slow-burn",
    "ChoreographSLOBudgetBurn": "slo-budget-burn",
    "ChoreographBrokerDown": "broker-down",
    "ChoreographDeadLettersOpen": "dead-letter-backlog",
    "ChoreographConsumerLagHigh": "consumer-lag",
    "ChoreographFlowsStuck": "stuck-flows",
    "ChoreographCompensationMissing": "missing-compensation",
    "ChoreographSchemaViolations": "schema-violations",
    "ChoreographConsumerCrashLoop": "consumer-crash",
    "ChoreographDeadLettersParked": "dead-letters-parked",
    "ChoreographSignatureFailures": "signature-failures",
    "ChoreographReplayRunning": "replay-running",
    "ChoreographOutboxRelayStuck": "relay-stuck",
    "ChoreographPublishSlow": "broker-degraded",
    "ChoreographBrokerDegraded": "broker-degraded",
}
"""Alert name -> runbook file stem under ``docs/runbooks/`` (one runbook per generated alert)."""


@dataclass(frozen=True, slots=True)
class AlertSettings:
    """Inputs of the generated rules besides the SLOs.

    ``app_spec`` (``MODULE:APP``) is quoted in the commands the descriptions
    suggest; without it those commands are left out (the runbook has them).
    ``owners`` maps service name -> ownership, ``flow_owners`` flow name ->
    ownership (:func:`flow_owners`). ``lag_seconds``: alert when the oldest
    unhandled record of a group is older than this.
    """

    app_name: str = "app"
    app_spec: str | None = None
    owners: Mapping[str, Ownership] = field(default_factory=dict)
    runbook_base: str = DEFAULT_RUNBOOK_BASE
    lag_seconds: float = 60.0
    flow_owners: Mapping[str, Ownership] = field(default_factory=dict)

    def runbook_url(self, alert: str) -> str:
        """The ``runbook_url`` annotation of ``alert``: ``<base>/<stem>.md``."""
        return f"{self.runbook_base.rstrip('/')}/{RUNBOOKS[alert]}.md"

    def app_command(self, command: str) -> str:
        """``choreograph <command> MODULE:APP`` as a sentence, or empty when the app spec is unknown."""
        return f" Run: choreograph {command} {self.app_spec}." if self.app_spec else ""


@dataclass(frozen=True, slots=True)
class Scope:
    """A set of consumer groups an alert copy covers: its PromQL matcher and the labels it adds."""

    matcher: str
    labels: dict[str, str]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def matcher(label: str, values: Sequence[str]) -> str:
    """Return a PromQL label matcher for one or several exact values (empty for none)."""
    if not values:
        return ""
    if len(values) == 1:
        return f'{label}="{_escape(values[0])}"'
    return f'{label}=~"{_escape("|".join(re.escape(v) for v in values))}"'


def selector(*matchers: str) -> str:
    """Join non-empty matchers into ``{a,b}`` (empty string for none)."""
    inner = ",".join(m for m in matchers if m)
    return "{" + inner + "}" if inner else ""


def _groups_of(services: Sequence[str]) -> str:
    """A regex matching the consumer groups (``service.handler``) of ``services``."""
    return "|".join(re.escape(s) + r"\..+" for s in services)


def _flows_of(flows: Sequence[str]) -> str:
    """A regex matching exactly the flow names ``flows``."""
    return "|".join(re.escape(f) for f in flows)


def _owner_scopes(label: str, owners: Mapping[str, Ownership], pattern: Callable[[Sequence[str]], str]) -> list[Scope]:
    """One scope per distinct owner (``label=~`` the pattern of its names, its labels), then one for the rest.

    ``owners`` maps a name (a service, a flow) to its owner; ``pattern`` makes
    the regex matching some names' series. The last scope matches every series
    of no owned name (no matcher at all when nothing is owned).
    """
    by_owner: dict[Ownership, list[str]] = {}
    for name, ownership in owners.items():
        by_owner.setdefault(ownership, []).append(name)
    scopes = [
        Scope(f'{label}=~"{_escape(pattern(names))}"', ownership.labels()) for ownership, names in by_owner.items()
    ]
    rest = f'{label}!~"{_escape(pattern(list(owners)))}"' if owners else ""
    scopes.append(Scope(rest, {}))
    return scopes


def group_scopes(owners: Mapping[str, Ownership]) -> list[Scope]:
    """One scope per distinct owner (its services' groups, its labels), then one for every other group."""
    return _owner_scopes("group", owners, _groups_of)


def flow_scopes(flow_owners: Mapping[str, Ownership]) -> list[Scope]:
    """One scope per distinct owner of flows (``flow=~"a|b"``, its labels), then one for every other flow."""
    return _owner_scopes("flow", flow_owners, _flows_of)


def flow_owners(flows: Iterable[Flow], topology: Topology) -> dict[str, Ownership]:
    """Flow name -> the owner of the services publishing its start events, when that is one owner."""
    owners = topology.owners()
    out: dict[str, Ownership] = {}
    for flow in flows:
        publishers = [service for ref in flow.start for service in topology.publishers(ref.type)]
        found = {owners[service] for service in publishers if service in owners}
        # Every publisher owned, all by one team: otherwise the flow has no single owner to page.
        if len(found) == 1 and all(service in owners for service in publishers):
            out[flow.name] = found.pop()
    return out


def owner_of_groups(owners: Mapping[str, Ownership], groups: Sequence[str]) -> Ownership | None:
    """The one owner of every service behind ``groups``, or None (no groups, unowned, or several owners)."""
    found = {owners.get(group.split(".", 1)[0]) for group in groups}
    if len(found) != 1:
        return None
    return found.pop()
