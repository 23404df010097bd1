"""Security commands: ``keys generate | list | rotate`` and ``export acl``.

Key files live in a directory (``--dir``, default ``$CHOREOGRAPH_KEYS_DIR`` or
``./keys``); see :mod:`choreograph.security.keyring`. Private key material is
never printed: listings show key ids, owners, creation times and public-key
fingerprints.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from choreograph.core.errors import ConfigurationError
from choreograph.ops.loader import load_app
from choreograph.ops.observe_cli import export_app
from choreograph.ops.terminal import EXIT_FAILED, EXIT_USAGE, cell, emit_json, fail, out, safe

if TYPE_CHECKING:
    from choreograph.security.keyring import KeyRing

keys_app = typer.Typer(
    help="Signing keys: generate, list, rotate (private keys are never printed).", no_args_is_help=True
)

DirOption = Annotated[
    Path,
    typer.Option("--dir", envvar="CHOREOGRAPH_KEYS_DIR", show_envvar=True, help="The key directory."),
]
ServiceArgument = Annotated[str, typer.Argument(metavar="SERVICE", help="The service the key signs for.")]


def _ring(directory: Path, *, create: bool = False) -> KeyRing:
    from choreograph.security.keyring import KeyRing  # the security extra: imported when a command runs

    if create and not directory.exists():
        return KeyRing()
    try:
        return KeyRing.load(directory)
    except ConfigurationError as exc:
        raise fail(str(exc), EXIT_USAGE) from None


def _save(ring: KeyRing, directory: Path) -> None:
    """Write the ring to ``directory``; a directory that cannot be written is a failure (exit 1), not a traceback."""
    try:
        ring.save(directory)
    except OSError as exc:
        raise fail(f"cannot write keys to {directory}: {exc.strerror or exc}", EXIT_FAILED) from None


@keys_app.command("generate")
def generate(service: ServiceArgument, directory: DirOption = Path("keys")) -> None:
    """Create the first signing key of SERVICE (refused if it has one: use rotate)."""
    ring = _ring(directory, create=True)
    if ring.signing_key(service) is not None:
        raise fail(f"service {service!r} already has a signing key; use: choreograph keys rotate {service}", EXIT_USAGE)
    try:
        key = ring.rotate(service)
    except ConfigurationError as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    _save(ring, directory)
    out.print(f"created key {safe(key.id)} for {safe(service)} in {safe(directory)}")


@keys_app.command("rotate")
def rotate(service: ServiceArgument, directory: DirOption = Path("keys")) -> None:
    """Give SERVICE a new signing key; the old public key stays, so events it signed still verify."""
    ring = _ring(directory)
    old = ring.signing_key(service)
    if old is None:
        raise fail(f"service {service!r} has no signing key; use: choreograph keys generate {service}", EXIT_USAGE)
    key = ring.rotate(service)
    _save(ring, directory)
    out.print(f"{safe(service)} now signs with {safe(key.id)}; {safe(old.id)} is kept for verification only")


@keys_app.command("list")
def list_keys(
    directory: DirOption = Path("keys"),
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """List the keys: id, owner, created, role (signing or verify), public-key fingerprint."""
    ring = _ring(directory)
    signing = {key.id for owner in ring.signers if (key := ring.signing_key(owner)) is not None}
    rows = [
        {
            "id": key.id,
            "owner": key.owner,
            "created": key.created,
            "role": "signing" if key.id in signing else "verify",
            "fingerprint": key.fingerprint(),
        }
        for key in ring.verification_keys()
    ]
    if as_json:
        emit_json({"keys": rows})
        return
    table = Table("id", "owner", "created", "role", "fingerprint")
    for row in rows:
        table.add_row(*(cell(row[name]) for name in ("id", "owner", "created", "role", "fingerprint")))
    out.print(table)


class AclFormat(StrEnum):
    """Broker-native ACL formats."""

    nats = "nats"
    redis = "redis"
    kafka = "kafka"


@export_app.command("acl")
def export_acl(
    app_spec: Annotated[str, typer.Argument(metavar="MODULE:APP", help="The App whose events the policy covers.")],
    format: Annotated[AclFormat, typer.Option("--format", help="nats, redis or kafka.")],  # noqa: A002
    policy_file: Annotated[
        Path | None, typer.Option("--policy", help="TOML policy (default: the least rights the app declares).")
    ] = None,
    prefix: Annotated[str | None, typer.Option(help="The broker's name prefix (default: the backend's).")] = None,
) -> None:
    """Write the publish and consume policy as broker configuration: NATS users, Redis ACL rules or Kafka ACLs."""
    from choreograph.security.acl import kafka_acls, nats_authorization, redis_acl, redis_acl_text, topic_rights
    from choreograph.security.policy import AccessPolicy

    app = load_app(app_spec)
    topology = app.topology()
    try:
        policy = AccessPolicy.load(policy_file) if policy_file else AccessPolicy.from_topology(topology)
    except ConfigurationError as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    events = {e.event_type(): e.topic() for s in topology.services for e in s.publishes}
    events.update({h.event.event_type(): h.event.topic() for s in topology.services for h in s.consumes})
    rights = topic_rights(policy, events)
    if format is AclFormat.nats:
        text = nats_authorization(rights, all_topics=events.values(), prefix=prefix or "choreo")
    elif format is AclFormat.redis:
        text = redis_acl_text(redis_acl(rights, prefix=prefix or "chor"))
    else:
        text = kafka_acls(rights)
    typer.echo(text, nl=False)  # verbatim: configuration, never wrapped


def register(cli: typer.Typer) -> None:
    """Add the ``keys`` group (``export acl`` joins the ``export`` group)."""
    cli.add_typer(keys_app, name="keys")
