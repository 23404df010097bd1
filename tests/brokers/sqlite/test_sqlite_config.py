"""SqliteConfig validation and the sqlite:/// URL."""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path

import pytest

import choreograph.brokers.sqlite as sqlite_package
from choreograph.brokers.sqlite import SqliteBroker, SqliteConfig
from choreograph.brokers.sqlite.config import parse_url
from choreograph.core.broker import Record
from choreograph.core.errors import ConfigurationError
from choreograph.observe.flows.store import SqliteFlowStore
from choreograph.schema.stores import SqliteSchemaStore


def test_public_api() -> None:
    assert sqlite_package.__all__ == ["SqliteBroker", "SqliteConfig", "SqliteSubscription"]


def test_defaults() -> None:
    config = SqliteConfig()
    assert (config.partitions, config.sync, config.lease_timeout) == (8, "normal", 10.0)
    assert config.effective_heartbeat_interval == pytest.approx(10.0 / 3)
    assert config.inbox_retention == 7 * 24 * 3600
    assert config.retention_max_age is None and config.retention_max_records is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"partitions": 0}, "partitions"),
        ({"sync": "off"}, "sync"),
        ({"lease_timeout": -1}, "lease_timeout"),
        ({"lease_timeout": 1.0, "heartbeat_interval": 2.0}, "heartbeat_interval"),
        ({"retention_max_records": 0}, "retention_max_records"),
        ({"retention_max_age": 0}, "retention_max_age"),
        ({"busy_timeout": -1}, "busy_timeout"),
    ],
)
def test_invalid_settings_are_rejected_by_name(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        SqliteConfig(**options)  # type: ignore[arg-type]


def test_url_options_parse_into_config() -> None:
    path, config = parse_url("sqlite:///./x.db?partitions=4&sync=full&retention_max_age=none&lease_timeout=2.5")
    assert path == "./x.db"
    assert (config.partitions, config.sync, config.retention_max_age, config.lease_timeout) == (4, "full", None, 2.5)
    assert parse_url("sqlite:////abs/dir/x.db")[0] == "/abs/dir/x.db"


def test_every_config_field_is_a_url_option() -> None:
    for field in dataclasses.fields(SqliteConfig):
        parse_url(f"sqlite:///x.db?{field.name}={'normal' if field.name == 'sync' else '1'}")


def test_unknown_url_option_is_rejected_by_name() -> None:
    with pytest.raises(ConfigurationError, match="unknown sqlite broker option 'partitons'"):
        parse_url("sqlite:///x.db?partitons=4")


@pytest.mark.parametrize(
    "url", ["redis://localhost", "sqlite://host/x.db", "sqlite:///", "sqlite:///x.db?partitions=x"]
)
def test_bad_urls_are_rejected(url: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_url(url)


async def test_from_url_opens_the_file_with_the_options(tmp_path: Path) -> None:
    broker = SqliteBroker.from_url(f"sqlite:///{tmp_path}/x.db?partitions=2&sync=full")
    try:
        assert broker.config.partitions == 2 and broker.config.sync == "full"
        await broker.ping()
        assert (tmp_path / "x.db").exists()
    finally:
        await broker.close()


async def test_the_database_and_its_wal_and_shm_are_created_owner_only(db_path: Path) -> None:
    # Given a permissive umask, as many shells and containers have
    old = os.umask(0o022)
    try:
        broker = SqliteBroker(db_path, SqliteConfig(partitions=1))
        await broker.publish("t", [Record(b"personal data", key="k")])
        # When the files exist (the WAL and its index are created by the first write)
        files = [db_path, Path(f"{db_path}-wal"), Path(f"{db_path}-shm")]
        modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in files}
        await broker.close()
    finally:
        os.umask(old)
    # Then none of them is readable or writable by anyone but the owner
    assert modes == {path.name: 0o600 for path in files}


async def test_an_existing_database_keeps_its_mode(db_path: Path) -> None:
    db_path.touch(mode=0o640)
    os.chmod(db_path, 0o640)  # an operator's choice (e.g. a group of readers) is kept
    broker = SqliteBroker(db_path, SqliteConfig(partitions=1))
    await broker.publish("t", [Record(b"x")])
    await broker.close()
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o640


async def test_the_schema_and_observer_stores_create_the_file_owner_only_too(tmp_path: Path) -> None:
    # They often open the broker's own file, and may be the first to create it
    old = os.umask(0o022)
    try:
        SqliteSchemaStore(tmp_path / "schemas.db").close()
        await SqliteFlowStore(tmp_path / "flows.db").close()
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "schemas.db").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "flows.db").stat().st_mode) == 0o600
