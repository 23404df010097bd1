"""The one way commands open brokers and Apps (ops/session.py) and load MODULE:ATTR (ops/loader.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from choreograph import App
from choreograph.core.broker import Broker, Record
from choreograph.core.errors import BrokerError, ConfigurationError
from choreograph.ops.loader import load_app, load_object, load_topology
from choreograph.ops.session import opened_app, opened_broker
from choreograph.schema.topology import Topology


async def test_opened_broker_closes_the_broker_when_the_body_fails() -> None:
    kept: list[Broker] = []

    async def failing_command() -> None:
        async with opened_broker("memory://") as broker:
            kept.append(broker)
            await broker.publish("t", [Record(b"{}", None)])
            raise RuntimeError("body failed")

    with pytest.raises(RuntimeError, match="body failed"):
        await failing_command()
    with pytest.raises(BrokerError, match="closed"):
        await kept[0].publish("t", [Record(b"{}", None)])


async def test_opened_broker_refuses_an_unknown_scheme_before_opening_anything() -> None:
    with pytest.raises(ConfigurationError, match="unknown broker scheme 'kafkaa'"):
        async with opened_broker("kafkaa://x"):
            pytest.fail("the body must not run")


app = App("session-test", broker="memory://")


async def test_opened_app_uses_the_given_broker_and_closes_the_app(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/given.db"
    async with opened_app(f"{__name__}:app", url) as loaded:
        assert loaded is app
        assert loaded.broker_url == url
        broker = loaded.broker
        await broker.ping()
    with pytest.raises(BrokerError):
        await broker.publish("t", [Record(b"{}", None)])


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project directory, the current directory, with modules the loader imports from there."""
    (tmp_path / "good_mod.py").write_text(
        "from choreograph import App\nclass Holder:\n    app = App('dotted', broker='memory://')\n"
        "app = App('plain', broker='memory://')\nnot_an_app = 42\n"
    )
    (tmp_path / "broken_mod.py").write_text("import no_such_dependency_of_broken_mod\napp = None\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the loader adds the current directory
    for name in ("good_mod", "broken_mod"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return tmp_path


def test_the_current_directory_is_importable_and_attribute_defaults_to_app(project: Path) -> None:
    assert load_app("good_mod").name == "plain"
    assert load_app("good_mod:app").name == "plain"


def test_a_dotted_attribute_is_followed(project: Path) -> None:
    assert load_app("good_mod:Holder.app").name == "dotted"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (":app", "is not MODULE:APP"),
        ("missing_mod_xyz:app", "cannot import module 'missing_mod_xyz'"),
        ("good_mod:nope", "module 'good_mod' has no attribute 'nope'"),
        ("good_mod:not_an_app", "good_mod:not_an_app is a int, not a choreograph App"),
    ],
)
def test_usage_errors_name_what_is_missing(project: Path, spec: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_app(spec)


def test_a_failing_import_inside_the_module_is_not_disguised_as_a_missing_module(project: Path) -> None:
    # broken_mod exists; its own import fails: that is a bug in it, shown as it is
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_of_broken_mod"):
        load_object("broken_mod:app")


def test_load_topology_takes_an_app_or_a_topology(project: Path) -> None:
    topology = load_topology("good_mod:app")
    assert isinstance(topology, Topology) and topology.app_name == "plain"
    with pytest.raises(ConfigurationError, match="expected a choreograph App"):
        load_topology("good_mod:not_an_app")
