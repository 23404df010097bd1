"""An Alertmanager configuration routed by the owners the services declare.

``choreograph export alertmanager MODULE:APP`` writes it. The routing tree:

- ``severity="info"`` alerts (a replay running) go to the ``null`` receiver:
  they exist to inhibit others, not to reach anyone;
- each owning team (the ``team`` label the rules copy from
  ``app.service(..., owner=...)``) gets a route with two receivers,
  ``team-<team>-page`` for ``severity="page"`` (repeated every hour until
  resolved) and ``team-<team>-ticket`` for the rest (repeated daily);
- alerts without a team (app-wide ones: broker down, stuck flows, SLOs across
  teams, and groups of unowned services) go to ``app-<app>-page`` /
  ``app-<app>-ticket``.

Inhibitions: a running replay silences lag alerts of the same group (the
seed's "suppress during replays": its backlog is intended), and a broker
that no worker reaches silences the lag, crash and stuck-flow alerts of the
same app (one cause, one page).

Receivers have no integration unless ``slack_api_url_file`` is given: then an
owner whose ``oncall`` is a ``#channel`` is paged there. Add email, PagerDuty
or webhook configs to the receivers by hand or in your config management;
the names and routes are the contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from choreograph.observe.alerting import INFO, PAGE
from choreograph.observe.yaml_text import to_yaml
from choreograph.schema.topology import Ownership

NULL_RECEIVER: Final = "null"
LAG_ALERT: Final = "ChoreographConsumerLagHigh"
REPLAY_ALERT: Final = "ChoreographReplayRunning"
BROKER_ALERT: Final = "ChoreographBrokerDown"
_TEXT: Final = "{{ range .Alerts }}{{ .Annotations.summary }}\nRunbook: {{ .Annotations.runbook_url }}\n{{ end }}"
SILENCED_BY_BROKER: Final = ("ChoreographConsumerLagHigh", "ChoreographConsumerCrashLoop", "ChoreographFlowsStuck")


def _q(value: str) -> str:
    """A matcher value in double quotes (Alertmanager's matcher syntax escapes like Go strings)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _receiver(name: str, oncall: str | None, slack: bool, page: bool) -> dict[str, Any]:
    receiver: dict[str, Any] = {"name": name}
    if slack and oncall and oncall.startswith("#"):
        receiver["slack_configs"] = [
            {
                "channel": oncall,
                "send_resolved": True,
                "title": ("[PAGE] " if page else "") + "{{ .CommonLabels.alertname }} ({{ .Status }})",
                "text": _TEXT,
            }
        ]
    return receiver


def _team_route(team: str, page: str, ticket: str) -> dict[str, Any]:
    return {
        "matchers": [f"team={_q(team)}"],
        "receiver": ticket,
        "routes": [{"matchers": [f"severity={_q(PAGE)}"], "receiver": page, "repeat_interval": "1h"}],
    }


def alertmanager_config(
    app_name: str, owners: Mapping[str, Ownership], *, slack_api_url_file: str | None = None
) -> dict[str, Any]:
    """Return the Alertmanager configuration as data: routes per owning team, page vs ticket, inhibitions."""
    slack = slack_api_url_file is not None
    teams: dict[str, Ownership] = {}
    for ownership in owners.values():
        teams.setdefault(ownership.team, ownership)
    receivers = [{"name": NULL_RECEIVER}]
    routes: list[dict[str, Any]] = [{"matchers": [f"severity={_q(INFO)}"], "receiver": NULL_RECEIVER}]
    for team, ownership in teams.items():
        page, ticket = f"team-{team}-page", f"team-{team}-ticket"
        receivers += [_receiver(page, ownership.oncall, slack, True), _receiver(ticket, ownership.oncall, slack, False)]
        routes.append(_team_route(team, page, ticket))
    # Prefixed names: a team called like the app (or "null") cannot collide with another receiver.
    app_page, app_ticket = f"app-{app_name}-page", f"app-{app_name}-ticket"
    receivers += [{"name": app_page}, {"name": app_ticket}]
    routes.append({"matchers": [f"severity={_q(PAGE)}"], "receiver": app_page, "repeat_interval": "1h"})
    config: dict[str, Any] = {}
    if slack_api_url_file is not None:
        config["global"] = {"slack_api_url_file": slack_api_url_file}
    config["route"] = {
        "receiver": app_ticket,
        "group_by": ["alertname", "app", "team", "group", "flow", "slo"],
        "group_wait": "30s",
        "group_interval": "5m",
        "repeat_interval": "24h",
        "routes": routes,
    }
    config["receivers"] = receivers
    config["inhibit_rules"] = [
        {
            "source_matchers": [f"alertname={_q(REPLAY_ALERT)}"],
            "target_matchers": [f"alertname={_q(LAG_ALERT)}"],
            "equal": ["group"],
        },
        {
            "source_matchers": [f"alertname={_q(BROKER_ALERT)}"],
            "target_matchers": [f"alertname=~{_q('|'.join(SILENCED_BY_BROKER))}"],
            "equal": ["app"],
        },
    ]
    return config


def alertmanager_yaml(app_name: str, owners: Mapping[str, Ownership], *, slack_api_url_file: str | None = None) -> str:
    """Return :func:`alertmanager_config` as YAML, ready for ``amtool check-config``."""
    header = (
        f"# Generated by `choreograph export alertmanager` for app {app_name!r}: one route per owning team,\n"
        "# page vs ticket by severity, lag alerts inhibited while a replay runs. Receivers are names only\n"
        "# unless --slack-api-url-file was given: add your integrations to them.\n"
    )
    return header + to_yaml(alertmanager_config(app_name, owners, slack_api_url_file=slack_api_url_file))
