"""deploy/kubernetes: every manifest validates, and the Deployment matches what ``choreograph run`` does.

Core kinds (Deployment, Service, Secret, PodDisruptionBudget) are validated,
strictly (unknown fields refused), against the Kubernetes OpenAPI schemas that
ship inside PyPI ``kubernetes-validate`` (offline). The two CRDs are not in
those schemas: the KEDA ScaledObject and the Prometheus Operator
ServiceMonitor are checked against small JSON schemas written here from the
fields their CRDs declare required (and the types of the fields we use) —
a structural check, not the operators' full validation.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import typer.main
import yaml

from choreograph import App
from choreograph.observe import metrics
from choreograph.observe.health import PATHS, serve_probes
from choreograph.ops.cli import cli

kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate (dev extra)")

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSIONS = ("1.29.0", "1.33.0")
CORE_KINDS = {"Deployment", "Service", "Secret", "PodDisruptionBudget"}
CRD_KINDS = {"ScaledObject", "ServiceMonitor"}

_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_LABEL_SELECTOR = {
    "type": "object",
    "properties": {"matchLabels": _STRING_MAP, "matchExpressions": {"type": "array"}},
    "additionalProperties": False,
}
_DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
_METADATA = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "labels": _STRING_MAP}}

SCALED_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "metadata": _METADATA,
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {name: {"type": "string"} for name in ("name", "kind", "apiVersion")},
                },
                **{
                    name: {"type": "integer", "minimum": 0}
                    for name in ("minReplicaCount", "maxReplicaCount", "pollingInterval", "cooldownPeriod")
                },
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "properties": {"type": {"type": "string"}, "metadata": _STRING_MAP},
                    },
                },
            },
        },
    },
}

SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "metadata": _METADATA,
        "spec": {
            "type": "object",
            "required": ["selector"],
            "properties": {
                "selector": _LABEL_SELECTOR,
                "endpoints": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": _DURATION,
                            "scrapeTimeout": _DURATION,
                        },
                        "additionalProperties": False,
                    },
                },
            },
        },
    },
}


def load_all() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


def one(kind: str) -> dict[str, Any]:
    (doc,) = [doc for doc in load_all() if doc["kind"] == kind]
    return doc


def worker() -> dict[str, Any]:
    container: dict[str, Any] = one("Deployment")["spec"]["template"]["spec"]["containers"][0]
    return container


def run_params() -> dict[str, Any]:
    """Parse the container's args with the real ``choreograph run`` command (nothing runs)."""
    args = worker()["args"]
    assert args[0] == "run"
    group = typer.main.get_command(cli)
    command = group.commands["run"]  # type: ignore[attr-defined]
    context = command.make_context("run", list(args[1:]))
    params: dict[str, Any] = context.params
    return params


def test_every_manifest_is_a_known_kind() -> None:
    kinds = [doc["kind"] for doc in load_all()]
    assert sorted(kinds) == sorted(CORE_KINDS | CRD_KINDS)
    listed = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(path.name for path in MANIFESTS.glob("*.yaml") if path.name != "kustomization.yaml")


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_core_manifests_validate_strictly_against_the_kubernetes_schemas(version: str) -> None:
    for doc in load_all():
        if doc["kind"] in CORE_KINDS:
            kubernetes_validate.validate(doc, version, strict=True)


def test_a_broken_manifest_is_refused() -> None:
    # The check can fail: a misspelt field and a wrong type are both refused.
    deployment = one("Deployment")
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 45
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)
    pdb = one("PodDisruptionBudget")
    pdb["spec"]["selector"] = "inventory-worker"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pdb, KUBERNETES_VERSIONS[-1], strict=True)


def test_crds_match_their_documented_required_fields_written_here_not_the_operators_schemas() -> None:
    jsonschema.validate(one("ScaledObject"), SCALED_OBJECT_SCHEMA)
    jsonschema.validate(one("ServiceMonitor"), SERVICE_MONITOR_SCHEMA)
    broken = one("ScaledObject")
    del broken["spec"]["triggers"][0]["type"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCALED_OBJECT_SCHEMA)


def test_the_worker_args_parse_with_the_run_command_and_keep_the_broker_url_out() -> None:
    params = run_params()
    assert params["app_spec"] == "choreograph.examples.shop.app:app"
    assert params["service"] == ["inventory"]
    # Probes reach the pod's IP: the server must not listen on loopback only.
    assert params["metrics_host"] == "0.0.0.0"
    assert params["broker"] is None and not any("://" in arg for arg in worker()["args"])
    (env,) = [var for var in worker()["env"] if var["name"] == "CHOREOGRAPH_BROKER"]
    secret = one("Secret")
    assert env["valueFrom"]["secretKeyRef"] == {"name": secret["metadata"]["name"], "key": "CHOREOGRAPH_BROKER"}
    assert "CHOREOGRAPH_BROKER" in secret["stringData"]


def test_grace_period_covers_the_run_commands_graceful_stop() -> None:
    # SIGTERM: handlers get --stop-timeout to finish and commit; then consumers leave and the broker closes.
    stop_timeout = run_params()["stop_timeout"]
    grace = one("Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= stop_timeout + 10, (grace, stop_timeout)


def test_probe_ports_and_paths_are_the_ones_the_run_command_serves() -> None:
    container = worker()
    (port,) = container["ports"]
    assert port["containerPort"] == run_params()["metrics_port"]
    probes = {name: container[name]["httpGet"] for name in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert {probe["port"] for probe in probes.values()} == {port["name"]}
    assert probes["livenessProbe"]["path"] == "/healthz" and probes["readinessProbe"]["path"] == "/readyz"
    assert {probe["path"] for probe in probes.values()} <= set(PATHS)


async def test_every_probe_path_is_answered_by_a_running_app(tmp_path: Path) -> None:
    # Given an App serving its probes as `choreograph run --metrics-port` does
    app = App("deploy", broker=f"sqlite:///{tmp_path}/d.db")
    server = await serve_probes(app, 0)
    container = worker()
    try:
        # Then every path the Deployment probes or scrapes is served (not 404)
        paths = {container[name]["httpGet"]["path"] for name in ("startupProbe", "livenessProbe", "readinessProbe")}
        paths.add(one("ServiceMonitor")["spec"]["endpoints"][0]["path"])
        for path in sorted(paths):
            status = await asyncio.to_thread(_status, server.port, path)
            assert status in (200, 503), (path, status)
    finally:
        await server.close()
        await app.close()


def _status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_service_pdb_monitor_and_scaler_point_at_the_worker() -> None:
    deployment = one("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    service, pdb, monitor, scaler = (
        one("Service"),
        one("PodDisruptionBudget"),
        one("ServiceMonitor"),
        one("ScaledObject"),
    )
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert scaler["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]


def test_the_scaler_queries_the_lag_metric_the_workers_export() -> None:
    scaler = one("ScaledObject")
    (trigger,) = scaler["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    query = trigger["metadata"]["query"]
    assert metrics.LAG in query
    # One value per partition whatever the number of pods exporting it, for the inventory groups only.
    assert "max by (group, topic, partition)" in query
    assert re.search(r'group=~"inventory\\\\\.\.\+"', query), query
    assert scaler["spec"]["minReplicaCount"] >= 1  # the workers export the lag themselves
    assert int(trigger["metadata"]["threshold"]) > 0


def test_the_scaler_query_counts_each_partition_once_whatever_the_pods(tmp_path: Path) -> None:
    # Given two pods that both export the lag of two inventory partitions, and a payment group's lag
    tool = shutil.which("promtool")
    if tool is None:
        if os.environ.get("CHOREOGRAPH_REQUIRE_BROKERS") == "1":
            pytest.fail("promtool is required (apt-get install prometheus) when CHOREOGRAPH_REQUIRE_BROKERS=1")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    assert tool is not None
    query = one("ScaledObject")["spec"]["triggers"][0]["metadata"]["query"]
    (tmp_path / "rules.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "keda", "rules": [{"record": "keda:inventory_lag", "expr": query}]}]})
    )
    series = [
        (pod, group, partition, lag)
        for pod in ("inventory-worker-a", "inventory-worker-b")
        for group, partition, lag in (
            ("inventory.reserve_stock", "0", 300),
            ("inventory.reserve_stock", "1", 200),
            ("inventory.release_stock", "0", 5),
            ("payment.capture_payment", "0", 7000),
        )
    ]
    tests = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": f'{metrics.LAG}{{pod="{pod}",group="{group}",topic="t",partition="{partition}"}}',
                        "values": f"{lag}x5",
                    }
                    for pod, group, partition, lag in series
                ],
                # When KEDA evaluates the query
                # Then each inventory partition counts once (not once per pod) and payment's lag not at all
                "promql_expr_test": [
                    {"expr": query, "eval_time": "2m", "exp_samples": [{"labels": "{}", "value": 505}]}
                ],
            }
        ],
    }
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(tests))
    result = subprocess.run(
        [tool, "test", "rules", "tests.yml"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
