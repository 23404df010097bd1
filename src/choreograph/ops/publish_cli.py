"""``choreograph publish``: publish one event from the command line, validated before it is sent.

With ``--app`` the data is validated by the App's own event model. Without it,
the data is validated against the JSON Schema registered for the type and
version in the broker's schema registry (``choreograph schema register``);
when the registry holds no schema for the type, a warning says so on stderr
and the event is published unvalidated. stdout carries only the event id, so
``ID=$(choreograph publish ...)`` works in scripts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import orjson
import typer

from choreograph.core import codec
from choreograph.core.broker import Record
from choreograph.core.envelope import Envelope, now_rfc3339
from choreograph.core.errors import ConfigurationError, MissingExtraError
from choreograph.core.ids import new_id
from choreograph.ops.loader import load_app
from choreograph.ops.schema_cli import open_store
from choreograph.ops.sealing import KeysOption, operator_security
from choreograph.ops.session import opened_broker
from choreograph.ops.terminal import EXIT_USAGE, BrokerOption, err, fail, out, run_async, safe
from choreograph.runtime.app import App
from choreograph.runtime.schema_store import close_schema_store
from choreograph.schema.errors import SchemaViolation
from choreograph.schema.registry import SchemaRegistry
from choreograph.schema.validation import JsonSchemaValidator


def warn(message: str) -> None:
    """Print ``message`` (already safe markup) as a warning on stderr."""
    err.print(f"[yellow]warning:[/] {message}", soft_wrap=True)


def registered_schema(broker: str | None, event_type: str, version: int) -> Mapping[str, Any] | None:
    """Return the JSON Schema registered for ``event_type`` v``version`` in the broker's registry.

    Returns None (after a warning on stderr) when the broker has no registry or
    the registry has no schema for the type. Raises ConfigurationError when the
    type is registered but not at ``version``: that is a mistake, not a new type.
    """
    try:
        store = open_store(broker, None, must_exist=True)
    except ConfigurationError:  # no log file yet, or a backend that keeps no registry
        warn(f"not validated: this broker has no schema registry to check {safe(event_type)} against")
        return None
    try:
        registry = SchemaRegistry(store)
        versions = registry.versions(event_type)
        if not versions:
            warn(f"not validated: no schema registered for {safe(event_type)} (choreograph schema register)")
            return None
        if version not in versions:
            shown = ", ".join(f"v{v}" for v in versions)
            raise ConfigurationError(
                f"{event_type} has no registered version {version} (registered: {shown}); pass --version"
            )
        return registry.get(event_type, version).schema
    finally:
        close_schema_store(store)


def validate_against_registry(broker: str | None, event_type: str, version: int, payload: dict[str, Any]) -> None:
    """Raise ConfigurationError naming each failing field if ``payload`` breaks its registered schema."""
    schema = registered_schema(broker, event_type, version)
    if schema is None:
        return
    try:
        validator = JsonSchemaValidator()
    except MissingExtraError as exc:
        warn(f"not validated: {safe(exc)}")
        return
    try:
        validator.validate(schema, payload)
    except SchemaViolation as exc:
        raise ConfigurationError(f"data does not match the registered schema of {exc}") from None


def _validate_against_app(app: App, app_spec: str, event_type: str, payload: dict[str, Any]) -> str:
    """Validate ``payload`` with the App's model for ``event_type``; return the model's topic."""
    models = {spec.event.event_type(): spec.event for spec in app.handlers}
    if event_type not in models:
        raise ConfigurationError(f"{app_spec} handles no event of type {event_type!r}")
    try:
        models[event_type].model_validate(payload)
    except ValueError as exc:
        raise ConfigurationError(f"data does not match {event_type}: {exc}") from None
    return models[event_type].topic()


def publish(
    event_type: Annotated[str, typer.Argument(metavar="TYPE", help="Event type, e.g. shop.order.placed")],
    data: Annotated[str, typer.Argument(metavar="JSON", help="The event data as a JSON object")],
    key: Annotated[
        str | None, typer.Option(metavar="KEY", help="Partition key (events with one key stay in order).")
    ] = None,
    topic: Annotated[str | None, typer.Option(metavar="TOPIC", help="Topic; default: the event type.")] = None,
    source: Annotated[str, typer.Option(metavar="SOURCE", help="CloudEvents source of the event.")] = "choreograph-cli",
    version: Annotated[int, typer.Option(metavar="N", help="Schema version of the data.")] = 1,
    app_spec: Annotated[
        str | None,
        typer.Option(
            "--app",
            metavar="MODULE:APP",
            help="Validate the data with this App's event model (default: the registry's schema, if any).",
        ),
    ] = None,
    keys: KeysOption = None,
    broker: BrokerOption = None,
) -> None:
    """Publish one event (a new correlation) and print its id.

    The data is validated first: by the App's model with --app, else by the
    schema registered for TYPE and --version (exit 2 naming each failing
    field). With no schema registered, a warning on stderr says the event goes
    out unvalidated.

    The event is signed with SOURCE's key when one is configured (--keys DIR,
    $CHOREOGRAPH_KEYS_DIR, $CHOREOGRAPH_SIGNING_KEYS, or the --app's key
    ring) and encrypted per the --app's encryption. When the App signs its
    events, or --keys is given, and no key signs for SOURCE, nothing is sent
    (exit 2): consumers would dead-letter it.
    """
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise fail(f"JSON is not valid: {exc}", EXIT_USAGE) from None
    if not isinstance(payload, dict):
        raise fail(f"JSON must be an object, got {type(payload).__name__}", EXIT_USAGE)

    @run_async
    async def main() -> None:
        resolved_topic = topic or event_type
        app = load_app(app_spec) if app_spec else None
        if app is not None and app_spec:
            resolved_topic = topic or _validate_against_app(app, app_spec, event_type, payload)
        else:
            validate_against_registry(broker, event_type, version, payload)
        security = operator_security(app.security if app is not None else None, keys, source, "the event")
        eid = new_id()
        envelope = Envelope(
            id=eid,
            source=source,
            type=event_type,
            data=payload,
            time=now_rfc3339(),
            correlationid=eid,
            partitionkey=key,
            schemaversion=version,
        )
        if security is not None:
            envelope = (await security.seal([envelope]))[0]
        async with opened_broker(broker) as target:
            await target.publish(resolved_topic, [Record(codec.encode(envelope), key)])
        out.print(eid)

    main()


def register(cli: typer.Typer) -> None:
    """Add ``publish`` to ``cli``."""
    cli.command("publish")(publish)
