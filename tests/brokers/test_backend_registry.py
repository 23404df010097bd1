"""One registry of backends: the ``choreograph.backends`` entry points, with the built-in ones always there."""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from choreograph.brokers import BUILT_IN, ENTRY_POINT_GROUP, backends, broker_class, open_broker
from choreograph.core.errors import ConfigurationError
from choreograph.core.kv import KeyValueProvider
from choreograph.ops.terminal import broker_schemes
from choreograph.testing.matrix import main, registered

from .toy_backend import ToyBroker

PYPROJECT = Path(__file__).parents[2] / "pyproject.toml"
TOY = "tests.brokers.toy_backend:ToyBroker"


@pytest.fixture
def installed(tmp_path: Path) -> Iterator[Path]:
    """A distribution "toy-backends" on sys.path declaring entry points in the backends group (real discovery)."""
    info = tmp_path / "toy_backends-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-backends\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n"
        f"toy = {TOY}\n"
        f"sqlite = {TOY}\n"  # tries to take over a built-in scheme
        "broken = tests.brokers.toy_backend:NoSuchBroker\n"
        "shapeless = tests.brokers.toy_backend\n"
    )
    sys.path.insert(0, str(tmp_path))
    backends.cache_clear()
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        backends.cache_clear()


def test_pyproject_declares_exactly_the_built_in_backends() -> None:
    declared = tomllib.loads(PYPROJECT.read_text())["project"]["entry-points"][ENTRY_POINT_GROUP]
    assert declared == BUILT_IN


def test_built_in_backends_work_whatever_is_installed() -> None:
    # The built-in table is the floor (a checkout without metadata has no entry points at all).
    assert BUILT_IN.items() <= backends().items()
    for scheme in BUILT_IN:
        assert broker_class(f"{scheme}://x").__name__.endswith("Broker")


def test_every_built_in_backend_provides_key_value_stores() -> None:
    for scheme in BUILT_IN:
        cls = broker_class(f"{scheme}://x")
        assert callable(getattr(cls, "key_value", None)), f"{scheme}: no key_value"
    broker = open_broker("memory://")
    assert isinstance(broker, KeyValueProvider)
    assert broker.key_value("shared") is broker.key_value("shared")  # one store per namespace per memory broker


@pytest.mark.usefixtures("installed")
async def test_an_installed_entry_point_adds_a_backend_everywhere() -> None:
    assert backends()["toy"] == TOY
    broker = open_broker("toy://")
    assert isinstance(broker, ToyBroker)
    await broker.close()
    assert "toy://" in broker_schemes()
    assert ("toy", TOY) in registered()
    assert "| capability | memory | sqlite | nats | redis | kafka | toy |" in main([])


@pytest.mark.usefixtures("installed")
def test_an_entry_point_cannot_replace_a_built_in_scheme() -> None:
    assert backends()["sqlite"] == BUILT_IN["sqlite"]
    assert broker_class("sqlite:///x.db").__name__ == "SqliteBroker"


@pytest.mark.usefixtures("installed")
@pytest.mark.parametrize(("url", "says"), [("broken://", "does not exist"), ("shapeless://", "module:Class")])
def test_a_bad_registration_is_a_configuration_error_naming_the_scheme(url: str, says: str) -> None:
    with pytest.raises(ConfigurationError, match=says) as refused:
        open_broker(url)
    assert repr(url.removesuffix("://")) in str(refused.value)


def test_an_unknown_scheme_lists_the_registered_ones() -> None:
    with pytest.raises(ConfigurationError, match="known: kafka://, memory://, nats://, redis://, rediss://, sqlite://"):
        open_broker("carrier-pigeon://coop")


def test_the_matrix_has_a_column_per_registered_class_and_a_key_value_row() -> None:
    assert [name for name, _ in registered()][:5] == ["memory", "sqlite", "nats", "redis", "kafka"]
    assert "| `key_value` (stores) | yes | yes | yes | yes | yes |" in main([])
