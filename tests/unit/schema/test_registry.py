"""Deriving schemas, the registry, and its stores (memory, SQLite, directory)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from choreograph.core.clock import FakeClock
from choreograph.core.event import Event
from choreograph.core.kv import MemoryKeyValue
from choreograph.schema import (
    TYPE_KEY,
    VERSION_KEY,
    Compatibility,
    DirectorySchemaStore,
    IncompatibleSchema,
    MemorySchemaStore,
    Rule,
    SchemaConflict,
    SchemaRecord,
    SchemaRegistry,
    SchemaStore,
    SqliteSchemaStore,
    UnknownSchema,
    derive_schema,
    fingerprint,
    sqlite_path_from_url,
    sync_stores,
)
from choreograph.schema.kv_store import KeyValueSchemaStore, LoopThread
from tests.unit.schema import shop


class PlacedV2(Event, type="shop.order.placed", version=2):
    """A customer placed an order (v2 adds an optional note)."""

    order_id: str
    customer_id: str
    lines: list[shop.Line]
    total: Decimal
    note: str = ""


class PlacedV2Broken(Event, type="shop.order.placed", version=2):
    order_id: str
    customer_id: int
    lines: list[shop.Line]
    total: Decimal


class PlacedV1Edited(Event, type="shop.order.placed", version=1):
    order_id: str
    customer_id: str
    lines: list[shop.Line]
    total: float


# -- derive ----------------------------------------------------------------------------------


def test_derived_schema_carries_type_version_and_closed_content_model() -> None:
    schema = derive_schema(shop.OrderPlaced)
    assert schema[TYPE_KEY] == "shop.order.placed"
    assert schema[VERSION_KEY] == 1
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["order_id", "customer_id", "lines", "total"]
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_fingerprint_ignores_docs_and_nested_model_names_but_not_defaults() -> None:
    class A(BaseModel):
        x: int

    class B(BaseModel):
        """Renamed and documented."""

        x: int

    class E1(Event, type="t.e", version=1):
        a: A
        n: int = 1

    class E2(Event, type="t.e", version=1):
        """Docs changed."""

        a: B
        n: int = Field(1, description="now documented")

    class E3(Event, type="t.e", version=1):
        a: A
        n: int = 2

    assert fingerprint(derive_schema(E1)) == fingerprint(derive_schema(E2))
    assert fingerprint(derive_schema(E1)) != fingerprint(derive_schema(E3))


# -- stores ----------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite", "directory", "kv"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SchemaStore]:
    if request.param == "memory":
        yield MemorySchemaStore()
    elif request.param == "kv":
        loop = LoopThread()
        kv_store = KeyValueSchemaStore(MemoryKeyValue("schemas"), loop.run)
        yield kv_store
        kv_store.close()
        loop.close()
    elif request.param == "sqlite":
        sqlite_store = SqliteSchemaStore(tmp_path / "choreograph.db")
        yield sqlite_store
        sqlite_store.close()
    else:
        yield DirectorySchemaStore(tmp_path / "schemas")


def test_register_then_read_back(store: SchemaStore) -> None:
    # Given a registry over the store
    registry = SchemaRegistry(store, clock=FakeClock(100.0))
    # When v1 and a compatible v2 are registered
    registry.register(shop.OrderPlaced)
    registry.register(PlacedV2)
    # Then both versions are listed and readable, with the default mode
    assert registry.event_types() == ["shop.order.placed"]
    assert registry.versions("shop.order.placed") == [1, 2]
    assert registry.get("shop.order.placed").schema == derive_schema(PlacedV2)
    assert registry.get("shop.order.placed", 1).fingerprint == fingerprint(derive_schema(shop.OrderPlaced))
    assert registry.mode("shop.order.placed") is Compatibility.BACKWARD


def test_register_is_idempotent(store: SchemaStore) -> None:
    registry = SchemaRegistry(store)
    first = registry.register(shop.OrderPlaced)
    again = registry.register(shop.OrderPlaced)
    assert again.fingerprint == first.fingerprint
    assert registry.versions("shop.order.placed") == [1]


def test_incompatible_version_is_refused_with_findings(store: SchemaStore) -> None:
    registry = SchemaRegistry(store)
    registry.register(shop.OrderPlaced)
    with pytest.raises(IncompatibleSchema, match=r"customer_id: type-changed") as info:
        registry.register(PlacedV2Broken)
    assert [(f.path, f.rule) for f in info.value.report.findings] == [("customer_id", Rule.TYPE_CHANGED)]
    assert registry.versions("shop.order.placed") == [1]


def test_mode_is_per_type(store: SchemaStore) -> None:
    # Given FULL on the order type only
    registry = SchemaRegistry(store)
    registry.register(shop.OrderPlaced)
    registry.set_mode("shop.order.placed", "full")
    # Then adding an optional field to a closed event breaks forward readers
    report = registry.check(PlacedV2)
    assert [(f.path, f.rule, f.direction) for f in report.findings] == [("note", Rule.FIELD_ADDED, "forward")]
    assert registry.mode("shop.inventory.reserved") is Compatibility.BACKWARD


def test_editing_a_registered_version_in_place_is_reported(store: SchemaStore) -> None:
    registry = SchemaRegistry(store)
    registry.register(shop.OrderPlaced)
    report = registry.check(PlacedV1Edited)
    assert report.status == "changed-in-place"
    assert report.findings[0].rule is Rule.VERSION_CHANGED_IN_PLACE
    assert ("total", Rule.TYPE_NARROWED) in {(f.path, f.rule) for f in report.findings}
    with pytest.raises(IncompatibleSchema):
        registry.register(PlacedV1Edited)


def test_store_refuses_a_different_schema_under_an_existing_version(store: SchemaStore) -> None:
    schema = derive_schema(shop.OrderPlaced)
    other = derive_schema(PlacedV1Edited)
    assert store.add(SchemaRecord("shop.order.placed", 1, schema, fingerprint(schema), 1.0))
    assert not store.add(SchemaRecord("shop.order.placed", 1, schema, fingerprint(schema), 2.0))
    with pytest.raises(SchemaConflict, match="immutable"):
        store.add(SchemaRecord("shop.order.placed", 1, other, fingerprint(other), 3.0))


def test_versions_only_move_forward(store: SchemaStore) -> None:
    registry = SchemaRegistry(store)
    registry.register(PlacedV2)
    report = registry.check(shop.OrderPlaced)
    assert [f.rule for f in report.findings] == [Rule.VERSION_OUT_OF_ORDER]


def test_unknown_type_or_version_raises_lookup_error(store: SchemaStore) -> None:
    registry = SchemaRegistry(store)
    with pytest.raises(UnknownSchema, match=r"shop\.nothing"):
        registry.get("shop.nothing")
    registry.register(shop.OrderPlaced)
    with pytest.raises(LookupError, match="registered: v1"):
        registry.get("shop.order.placed", 7)


def test_reserved_name_through_the_registry(store: SchemaStore) -> None:
    # Given v1 with `lines`, and v2 registered under NONE without it
    class V2(Event, type="shop.order.placed", version=2):
        order_id: str
        customer_id: str
        total: Decimal

    class V3(Event, type="shop.order.placed", version=3):
        order_id: str
        customer_id: str
        total: Decimal
        lines: str = ""

    registry = SchemaRegistry(store)
    registry.register(shop.OrderPlaced)
    registry.set_mode("shop.order.placed", Compatibility.NONE)
    registry.register(V2)
    registry.set_mode("shop.order.placed", Compatibility.BACKWARD)
    # When v3 brings `lines` back as a string
    report = registry.check(V3)
    # Then the reserved-name rule refuses it
    assert [(f.path, f.rule) for f in report.findings] == [("lines", Rule.RESERVED_FIELD_REUSED)]


# -- backend specifics ----------------------------------------------------------------------


def test_sqlite_store_uses_wal_and_a_schemas_table_in_the_broker_file(tmp_path: Path) -> None:
    path = tmp_path / "choreograph.db"
    with SqliteSchemaStore.from_url(f"sqlite:///{path}") as store:
        SchemaRegistry(store).register(shop.OrderPlaced)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        rows = conn.execute("SELECT event_type, version FROM schemas").fetchall()
    finally:
        conn.close()
    assert rows == [("shop.order.placed", 1)]


def test_sqlite_store_is_shared_between_connections(tmp_path: Path) -> None:
    path = tmp_path / "choreograph.db"
    with SqliteSchemaStore(path) as one, SqliteSchemaStore(path) as two:
        SchemaRegistry(one).register(shop.OrderPlaced)
        SchemaRegistry(one).set_mode("shop.order.placed", Compatibility.FULL)
        assert SchemaRegistry(two).versions("shop.order.placed") == [1]
        assert SchemaRegistry(two).mode("shop.order.placed") is Compatibility.FULL


@pytest.mark.parametrize(
    ("url", "path"),
    [("sqlite:///./x.db", "./x.db"), ("sqlite:////abs/x.db", "/abs/x.db"), ("sqlite:///x.db?sync=full", "x.db")],
)
def test_sqlite_url_paths(url: str, path: str) -> None:
    assert sqlite_path_from_url(url) == path


@pytest.mark.parametrize("url", ["kafka://host", "sqlite://host/x.db", "sqlite:///"])
def test_bad_sqlite_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="sqlite"):
        sqlite_path_from_url(url)


def test_directory_store_writes_reviewable_files(tmp_path: Path) -> None:
    registry = SchemaRegistry(DirectorySchemaStore(tmp_path))
    registry.register(shop.OrderPlaced)
    registry.set_mode("shop.order.placed", Compatibility.FULL_TRANSITIVE)
    file = tmp_path / "shop.order.placed" / "v1.json"
    assert json.loads(file.read_text()) == derive_schema(shop.OrderPlaced)
    assert file.read_text().endswith("}\n")
    assert json.loads((tmp_path / "shop.order.placed" / "compatibility.json").read_text())["compatibility"] == (
        "FULL_TRANSITIVE"
    )
    assert not [p for p in (tmp_path / "shop.order.placed").iterdir() if p.name.startswith(".tmp")]


def test_sync_copies_versions_and_modes_into_a_directory(tmp_path: Path) -> None:
    # Given a SQLite registry with two versions and a mode
    with SqliteSchemaStore(tmp_path / "b.db") as source:
        registry = SchemaRegistry(source)
        registry.register(shop.OrderPlaced)
        registry.register(PlacedV2)
        registry.set_mode("shop.order.placed", Compatibility.FULL)
        target = DirectorySchemaStore(tmp_path / "schemas")
        # When synced twice
        first = sync_stores(source, target)
        second = sync_stores(source, target)
    # Then the files hold both versions once, and the mode
    assert [(r.event_type, r.version) for r in first] == [("shop.order.placed", 1), ("shop.order.placed", 2)]
    assert second == []
    assert sorted(p.name for p in (tmp_path / "schemas" / "shop.order.placed").iterdir()) == [
        "compatibility.json",
        "v1.json",
        "v2.json",
    ]
    assert SchemaRegistry(target).mode("shop.order.placed") is Compatibility.FULL
