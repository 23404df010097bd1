"""The generated YAML reads back as exactly the data it was made from, whatever the strings hold."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from choreograph.observe.alertmanager import alertmanager_yaml
from choreograph.observe.yaml_text import to_yaml
from choreograph.schema.topology import Ownership

scalars = st.one_of(
    st.text(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
)
keys = st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True) | st.text(max_size=8)
documents = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4), max_leaves=20
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(keys, documents, min_size=1, max_size=5))
def test_to_yaml_reads_back_as_the_same_data(data: dict[str, Any]) -> None:
    assert yaml.safe_load(to_yaml(data)) == data


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=1).filter(lambda t: t.strip() and not any(ord(c) < 32 or ord(c) == 127 for c in t)))
def test_any_owner_name_survives_the_alertmanager_file(team: str) -> None:
    loaded = yaml.safe_load(alertmanager_yaml("shop", {"payment": Ownership(team, "#oncall")}))
    assert {r["name"] for r in loaded["receivers"]} >= {f"team-{team}-page", f"team-{team}-ticket"}


def test_amtool_accepts_a_hostile_owner_name(tmp_path: Path) -> None:
    from tests.unit.observe.test_alert_rules import tool

    amtool = tool("amtool", "prometheus-alertmanager")
    path = tmp_path / "am.yml"
    path.write_text(alertmanager_yaml("shop", {"payment": Ownership('we"ird\\team \x85ünï: #x {{ .x }}', "#p")}))
    result = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert shutil.which("amtool")
