"""``choreograph schema``: list, show, register, check and diff event schemas; catalog and AsyncAPI.

``schema check MODULE:APP`` is a contract test for CI: it exits 1 and prints a
diff-style explanation when an event in the code breaks its type's
compatibility mode against the registry.

The registry lives in the broker's store (``--broker URL``, default
``$CHOREOGRAPH_BROKER`` or ``sqlite:///./choreograph.db``: the SQLite log's
file, or the key-value store of a NATS, Redis or Kafka broker; see
:mod:`choreograph.runtime.schema_store`) or in a directory of reviewed files
(``--dir schemas/``).

Exit codes: 0 ok; 1 incompatible (or a version conflict); 2 usage or input
error (arguments, module, URL, unknown type, unreadable store).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Final

import typer

from choreograph.brokers import DEFAULT_URL, ENV_VAR
from choreograph.core.errors import BrokerError, ChoreographError, ConfigurationError, ContractError
from choreograph.core.printable import printable
from choreograph.ops.loader import load_topology
from choreograph.ops.terminal import json_block, json_line, schemes_text
from choreograph.runtime.schema_store import close_schema_store, open_schema_store
from choreograph.schema.asyncapi import asyncapi_json
from choreograph.schema.catalog import render_catalog
from choreograph.schema.compatibility import Compatibility, CompatibilityReport, diff_schemas
from choreograph.schema.derive import derive_schema
from choreograph.schema.errors import (
    IncompatibleSchema,
    SchemaConflict,
    SchemaError,
    UnknownSchema,
)
from choreograph.schema.registry import SchemaRegistry
from choreograph.schema.store import SchemaStore
from choreograph.schema.stores import DirectorySchemaStore, sync_stores
from choreograph.schema.topology import Topology

EXIT_OK: Final = 0
EXIT_INCOMPATIBLE: Final = 1
EXIT_USAGE: Final = 2
DEFAULT_BROKER: Final = DEFAULT_URL
BROKER_ENV: Final = ENV_VAR

schema_app = typer.Typer(
    name="schema",
    help="Event schemas: list, show, register, check (CI contract test), diff.",
    no_args_is_help=True,
)

AppArgument = Annotated[
    str,
    typer.Argument(metavar="MODULE:APP", help="The app whose events to use, e.g. choreograph.examples.shop.app:app"),
]
BrokerOption = Annotated[
    str | None,
    typer.Option(
        "--broker",
        "-b",
        envvar=BROKER_ENV,
        metavar="URL",
        help=f"Broker URL ({schemes_text()}) whose store holds the registry: the SQLite log's file, or the "
        f"key-value store of NATS, Redis or Kafka (memory:// keeps none: use --dir). "
        f"Default: ${BROKER_ENV} or {DEFAULT_BROKER}",
        show_default=False,
    ),
]
DirOption = Annotated[
    Path | None,
    typer.Option("--dir", "-d", help="Use a directory of schema files (<type>/v<N>.json) instead of the broker."),
]


def open_store(broker: str | None, directory: Path | None, *, must_exist: bool) -> SchemaStore:
    """Return the store named by ``--dir`` or ``--broker`` (env / default when neither is given).

    With ``must_exist`` a missing database file or directory is an error
    instead of being created, so read-only commands do not invent a registry.
    """
    if directory is not None:
        if must_exist and not directory.is_dir():
            raise ConfigurationError(f"schema directory {str(directory)!r} does not exist")
        return DirectorySchemaStore(directory)
    return open_schema_store(broker or os.environ.get(BROKER_ENV) or DEFAULT_BROKER, must_exist=must_exist)


def _echo(text: str = "") -> None:
    typer.echo(text)


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {printable(message, keep_newlines=True)}", err=True)
    return typer.Exit(code)


@contextmanager
def _registry(broker: str | None, directory: Path | None, *, must_exist: bool) -> Iterator[SchemaRegistry]:
    """Open a registry, map choreograph errors to exit codes, close the store."""
    store: SchemaStore | None = None
    try:
        store = open_store(broker, directory, must_exist=must_exist)
        yield SchemaRegistry(store)
    except (IncompatibleSchema, SchemaConflict) as exc:
        raise _fail(str(exc), EXIT_INCOMPATIBLE) from None
    except (ConfigurationError, ContractError, SchemaError) as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    except BrokerError as exc:  # the broker holding the registry cannot be read: an unreadable store
        raise _fail(f"broker unavailable: {exc}", EXIT_USAGE) from None
    finally:
        if store is not None:
            close_schema_store(store)


def _topology(spec: str) -> Topology:
    try:
        return load_topology(spec)
    except (ConfigurationError, ContractError) as exc:
        raise _fail(str(exc), EXIT_USAGE) from None


@schema_app.command("list")
def list_(
    broker: BrokerOption = None,
    directory: DirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document per event type.")] = False,
) -> None:
    """List registered event types with their versions and compatibility mode."""
    with _registry(broker, directory, must_exist=True) as registry:
        found = [
            (event_type, list(registry.versions(event_type)), str(registry.mode(event_type)))
            for event_type in registry.event_types()
        ]
    if as_json:
        for event_type, numbers, compatibility in found:
            _echo(json_line({"type": event_type, "versions": numbers, "mode": compatibility}))
        return
    if not found:
        _echo("no schemas registered")
        return
    rows = [("TYPE", "VERSIONS", "MODE")]
    rows += [(printable(t), ", ".join(f"v{v}" for v in numbers) or "-", printable(m)) for t, numbers, m in found]
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    for name, versions, mode in rows:
        _echo(f"{name.ljust(widths[0])}  {versions.ljust(widths[1])}  {mode}")


@schema_app.command()
def show(
    event_type: Annotated[str, typer.Argument(metavar="TYPE", help="Event type, e.g. shop.order.placed")],
    version: Annotated[int | None, typer.Option("--version", "-v", help="Version (default: latest).")] = None,
    broker: BrokerOption = None,
    directory: DirOption = None,
) -> None:
    """Print the JSON Schema of one registered version (the latest by default)."""
    with _registry(broker, directory, must_exist=True) as registry:
        record = registry.get(event_type, version)
    _echo(json_block(dict(record.schema)))


@schema_app.command()
def mode(
    event_type: Annotated[str, typer.Argument(metavar="TYPE", help="Event type, e.g. shop.order.placed")],
    new_mode: Annotated[
        str | None,
        typer.Argument(metavar="[MODE]", help="BACKWARD, FORWARD, FULL (each optionally _TRANSITIVE) or NONE."),
    ] = None,
    broker: BrokerOption = None,
    directory: DirOption = None,
) -> None:
    """Show or set the compatibility mode of an event type (default BACKWARD)."""
    with _registry(broker, directory, must_exist=new_mode is None) as registry:
        if new_mode is not None:
            registry.set_mode(event_type, Compatibility.parse(new_mode))
        _echo(f"{event_type}: {registry.mode(event_type)}")


def _reports(registry: SchemaRegistry, topology: Topology) -> list[CompatibilityReport]:
    ordered = sorted(topology.events(), key=lambda c: (c.event_type(), c.event_version()))
    return [registry.check(event_cls) for event_cls in ordered]


@schema_app.command("register")
def register_schemas(
    app_spec: AppArgument,
    broker: BrokerOption = None,
    directory: DirOption = None,
) -> None:
    """Register every event the app publishes or consumes.

    Checks all of them first; if any breaks its mode nothing is registered and
    the command exits 1 with the explanation.
    """
    topology = _topology(app_spec)
    with _registry(broker, directory, must_exist=False) as registry:
        reports = _reports(registry, topology)
        broken = [r for r in reports if not r.compatible]
        if broken:
            for report in broken:
                _echo(report.render())
                _echo()
            raise _fail(f"{len(broken)} event schema(s) incompatible; nothing registered", EXIT_INCOMPATIBLE)
        events = {(c.event_type(), c.event_version()): c for c in topology.events()}
        for report in reports:
            registry.register(events[(report.event_type, report.version)])
            verb = "unchanged" if report.status == "registered" else "registered"
            _echo(f"{verb}: {report.event_type} v{report.version}")


@schema_app.command()
def check(
    app_spec: AppArgument,
    broker: BrokerOption = None,
    directory: DirOption = None,
    require_registered: Annotated[
        bool,
        typer.Option("--require-registered", help="Also fail (exit 1) when a type or version is not registered yet."),
    ] = False,
) -> None:
    """Check the app's events against the registry without writing (a CI contract test).

    Exits 1 with a diff-style explanation if any event breaks its type's mode
    or a registered version was edited in place; with --require-registered,
    also when the code has a version the registry lacks.
    """
    topology = _topology(app_spec)
    with _registry(broker, directory, must_exist=True) as registry:
        reports = _reports(registry, topology)
    broken = 0
    for report in reports:
        if not report.compatible:
            broken += 1
            _echo(report.render())
            _echo()
        elif require_registered and report.status != "registered":
            broken += 1
            _echo(f"{report.summary()}; NOT REGISTERED: run `choreograph schema register` and commit the files")
        else:
            _echo(report.summary())
    if broken:
        raise _fail(
            f"{broken} of {len(reports)} event schema(s) incompatible with or missing from the registry",
            EXIT_INCOMPATIBLE,
        )
    _echo(f"ok: {len(reports)} event schema(s) compatible")


@schema_app.command()
def diff(
    event_type: Annotated[str, typer.Argument(metavar="TYPE", help="Event type, e.g. shop.order.placed")],
    old: Annotated[
        int | None, typer.Argument(metavar="[OLD]", help="Old version (default: the one before NEW).")
    ] = None,
    new: Annotated[int | None, typer.Argument(metavar="[NEW]", help="New version (default: latest).")] = None,
    app_spec: Annotated[
        str | None,
        typer.Option("--app", metavar="MODULE:APP", help="Compare the code's version of TYPE with the registry."),
    ] = None,
    broker: BrokerOption = None,
    directory: DirOption = None,
) -> None:
    """Show every change between two versions of a type and whom it breaks.

    Compares two registered versions, or with ``--app`` the code's schema with
    the latest registered one (or OLD). Informational: exits 0 whatever the
    changes.
    """
    topology = _topology(app_spec) if app_spec else None
    with _registry(broker, directory, must_exist=True) as registry:
        if topology is not None:
            classes = [c for c in topology.events() if c.event_type() == event_type]
            if not classes:
                raise _fail(f"{app_spec} has no event of type {event_type!r}", EXIT_USAGE)
            code_cls = max(classes, key=lambda c: c.event_version())
            before = registry.get(event_type, old)
            after_schema = derive_schema(code_cls)
            labels = (f"v{before.version} (registry)", f"v{code_cls.event_version()} (code)")
        else:
            versions = registry.versions(event_type)
            if not versions:
                raise UnknownSchema(f"no schema registered for {event_type}")
            new_v = new if new is not None else versions[-1]
            old_v = old if old is not None else max((v for v in versions if v < new_v), default=new_v)
            before = registry.get(event_type, old_v)
            after_schema = dict(registry.get(event_type, new_v).schema)
            labels = (f"v{old_v}", f"v{new_v}")
        changes = diff_schemas(before.schema, after_schema)
    _echo(f"--- {event_type} {labels[0]}")
    _echo(f"+++ {event_type} {labels[1]}")
    if not changes:
        _echo("no changes that affect validation")
    for change in changes:
        _echo(change.render())


@schema_app.command()
def sync(
    directory: Annotated[Path, typer.Option("--dir", "-d", help="Directory to write <type>/v<N>.json files to.")],
    broker: BrokerOption = None,
) -> None:
    """Copy every registered schema from the broker's store into a directory, for review in git."""
    with _registry(broker, None, must_exist=True) as registry:
        added = sync_stores(registry.store, DirectorySchemaStore(directory))
    for record in added:
        _echo(f"wrote {directory / record.event_type / f'v{record.version}.json'}")
    _echo(f"{len(added)} new file(s)")


def _write(text: str, output: Path | None) -> None:
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise _fail(f"cannot write {output}: {exc}", EXIT_USAGE) from None
    typer.echo(f"wrote {output}", err=True)


def catalog_command(
    app_spec: AppArgument,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")] = None,
    broker: BrokerOption = None,
    directory: DirOption = None,
    no_registry: Annotated[
        bool, typer.Option("--no-registry", help="Do not read registered versions and modes.")
    ] = False,
) -> None:
    """Write the event catalog (Markdown with a Mermaid diagram) of an app."""
    topology = _topology(app_spec)
    if no_registry:
        _write(_render_catalog(topology, None), output)
        return
    with _registry(broker, directory, must_exist=True) as registry:
        text = _render_catalog(topology, registry)
    _write(text, output)


def _render_catalog(topology: Topology, registry: SchemaRegistry | None) -> str:
    try:
        return render_catalog(topology, registry)
    except ChoreographError as exc:
        raise _fail(str(exc), EXIT_USAGE) from None


def asyncapi_command(
    app_spec: AppArgument,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")] = None,
    version: Annotated[str, typer.Option(help="The info.version of the document.")] = "1.0.0",
    title: Annotated[str | None, typer.Option(help="The info.title (default: the app name).")] = None,
) -> None:
    """Write the app's AsyncAPI 3.0 document (JSON)."""
    topology = _topology(app_spec)
    try:
        text = asyncapi_json(topology, version=version, title=title)
    except ChoreographError as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    _write(text, output)


def register(cli: typer.Typer) -> None:
    """Add the ``schema`` group, ``catalog`` and ``asyncapi`` to ``cli``."""
    cli.add_typer(schema_app, name="schema")
    cli.command("catalog")(catalog_command)
    cli.command("asyncapi")(asyncapi_command)
