"""``choreograph dlq edit / settings``: edit a dead letter's payload and send it again, when editing is allowed.

Editing is off by default for a deployment, as in ServicePulse: an operator
turns it on with ``choreograph dlq settings --editing on``, a setting stored
with the broker (so it holds for every operator of that deployment) and
recorded in the audit trail. The edited payload is validated against the
event's schema before anything is sent: the App's model with ``--app``, else
the schema registered for the event's type and version; with neither, the edit
is refused.

A signed or encrypted dead letter is sealed again (see :mod:`.sealing`): the
copy is signed with the operator's key for its source (``--keys DIR``) and
encrypted with the ``--app``'s key store, which also decrypts the payload for
editing. Without the key it needs, the edit is refused naming the fix: an
unsigned copy would be dead-lettered again (reason ``signature``), and one
with a stale ciphertext would bring the old values back.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from choreograph.core import codec
from choreograph.core.broker import DeadLetter
from choreograph.core.enums import DeadLetterReason
from choreograph.core.envelope import Envelope
from choreograph.core.errors import ConfigurationError, DecodeError, MissingExtraError
from choreograph.ops.dlq_common import ActorOption, dlq
from choreograph.ops.loader import load_app
from choreograph.ops.publish_cli import registered_schema
from choreograph.ops.sealing import KeysOption, operator_security
from choreograph.ops.session import opened_broker
from choreograph.ops.terminal import EXIT_FAILED, BrokerOption, fail, out, run_async, safe
from choreograph.runtime.dead_letters import DeadLetterDesk, EditingDisabled
from choreograph.schema.errors import SchemaViolation
from choreograph.schema.validation import JsonSchemaValidator

_MISSING = object()


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7396 JSON merge patch: objects merge recursively, ``null`` removes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = merge_patch(result.get(name), value)
    return result


def set_path(doc: Any, assignment: str) -> Any:
    """Apply one ``path=value`` (dotted path, list indices as numbers; value as JSON, else as a string)."""
    path, sep, raw = assignment.partition("=")
    if not sep or not path:
        raise ConfigurationError(f"--set {assignment!r}: use path=value, e.g. --set address.zip=12345")
    try:
        value: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = raw
    parts = path.split(".")
    node = doc
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigurationError(f"--set {path}: {part!r} is not an index of the list there")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise ConfigurationError(f"--set {path}: {'.'.join(parts[:index])!r} holds no object or list")
    return doc


def changed_paths(before: Any, after: Any, prefix: str = "") -> list[str]:
    """The dotted paths whose values differ between two JSON documents (for the confirmation)."""
    if isinstance(before, dict) and isinstance(after, dict):
        found: list[str] = []
        for name in sorted(set(before) | set(after), key=str):
            found += changed_paths(before.get(name, _MISSING), after.get(name, _MISSING), f"{prefix}{name}.")
        return found
    return [] if before == after else [prefix.rstrip(".") or "(the whole payload)"]


def _edit_in_editor(data: Any) -> Any:
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR")
    if not editor:
        raise ConfigurationError("set $EDITOR (or $VISUAL), or give the change with --set path=value or --patch FILE")
    with tempfile.TemporaryDirectory(prefix="choreograph-edit-") as folder:
        path = Path(folder) / "payload.json"
        path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
        if subprocess.call([*shlex.split(editor), str(path)]) != 0:
            raise ConfigurationError("the editor exited with an error; nothing was sent")
        try:
            return orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError as exc:
            raise ConfigurationError(f"the edited payload is not JSON ({exc}); nothing was sent") from None


def validator(broker: str | None, app_spec: str | None) -> Callable[[str, int, Any], None]:
    """The check an edit must pass: the App's model with ``app_spec``, else the registered JSON Schema."""

    def check(event_type: str, version: int, data: Any) -> None:
        if app_spec is not None:
            app = load_app(app_spec)
            models = {spec.event.event_type(): spec.event for spec in app.handlers}
            model = models.get(event_type)
            if model is None:
                raise ConfigurationError(f"{app_spec} handles no event of type {event_type!r}; nothing was sent")
            if model.event_version() != version:
                raise ConfigurationError(
                    f"the dead letter holds {event_type} v{version} but the App's model is "
                    f"v{model.event_version()}; validate against the registry (omit --app)"
                )
            try:
                model.model_validate(data)
            except ValueError as exc:
                raise ConfigurationError(f"edited payload does not match {event_type}: {exc}") from None
            return
        schema = registered_schema(broker, event_type, version)
        if schema is None:
            raise ConfigurationError(
                f"no schema to check the edit of {event_type} v{version} against: pass --app MODULE:APP, or "
                "register it (choreograph schema register); nothing was sent"
            )
        try:
            JsonSchemaValidator().validate(schema, data)
        except MissingExtraError as exc:
            raise ConfigurationError(f"cannot validate the edit: {exc}") from None
        except SchemaViolation as exc:
            raise ConfigurationError(f"edited payload does not match the registered schema of {exc}") from None

    return check


async def _unsealed_payload(
    original: Envelope, letter: DeadLetter, app_spec: str | None, keys: Path | None, source: str | None
) -> tuple[Any, Callable[[Envelope], Awaitable[Envelope]] | None]:
    """The payload to edit (decrypted) and how to seal the copy; ConfigurationError when a key is missing."""
    letter_id = letter.id
    # The attribute names of choreograph.security (signature, encdata), read without needing its extra.
    signed = original.extensions.get("signature") is not None
    encrypted = original.extensions.get("encdata") is not None
    app_security = load_app(app_spec).security if app_spec is not None else None
    signer = source or original.source
    security = operator_security(app_security, keys, signer, "the edited copy")
    if (
        security is not None
        and security.signing
        and letter.reason in (DeadLetterReason.SIGNATURE, DeadLetterReason.UNAUTHORIZED)
    ):
        raise ConfigurationError(
            f"dead letter {letter_id} was refused by the signature check (reason {letter.reason!r}): signing an "
            "edited copy would vouch for an event nobody verified; publish a new event instead "
            "(choreograph publish --keys DIR); nothing was sent"
        )
    if signed and (security is None or not security.signing):
        raise ConfigurationError(
            f"dead letter {letter_id} holds a signed event: its edited copy must be signed too, or consumers "
            f"dead-letter it again (reason 'signature'); pass --keys DIR holding a signing key for {signer!r} "
            "(or --source SERVICE, a service whose key you hold and which the access policy lets publish "
            f"{original.type}); nothing was sent"
        )
    data = original.data
    if encrypted:
        encryption = app_security.encryption if app_security is not None else None
        if encryption is None:
            raise ConfigurationError(
                f"dead letter {letter_id} holds an encrypted payload: pass --app MODULE:APP whose "
                "App(security=...) has the data-key store, to decrypt it for editing and encrypt the copy; "
                "nothing was sent"
            )
        from choreograph.security.errors import SecurityError

        try:
            data = (await encryption.decrypt(original)).data
        except SecurityError as exc:
            raise ConfigurationError(f"dead letter {letter_id} cannot be decrypted: {exc}; nothing was sent") from None
    if security is None and source is None:
        return data, None

    async def seal(envelope: Envelope) -> Envelope:
        if source is not None:
            envelope = envelope.replace(source=source)
        if security is None:
            return envelope
        from choreograph.security.guard import unsealed

        return (await security.seal([unsealed(envelope)]))[0]

    return data, seal


@dlq.command()
def edit(
    dead_letter_id: Annotated[
        str, typer.Argument(metavar="ID", help="The dead letter to edit (its id, from `dlq list`).")
    ],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", metavar="PATH=VALUE", help="Change one field (VALUE as JSON, else text); repeatable."),
    ] = None,
    patch: Annotated[
        Path | None, typer.Option("--patch", metavar="FILE", help="Apply a JSON merge patch (RFC 7396) from FILE.")
    ] = None,
    app_spec: Annotated[
        str | None,
        typer.Option("--app", metavar="MODULE:APP", help="Validate with this App's event model (default: registry)."),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Send without asking.")] = False,
    keys: KeysOption = None,
    source: Annotated[
        str | None,
        typer.Option(metavar="SERVICE", help="Send the copy as SERVICE, signed with its key (default: its source)."),
    ] = None,
    actor: ActorOption = None,
    broker: BrokerOption = None,
) -> None:
    """Edit a dead letter's payload and send the edited copy to its group, as a new event.

    Without --set or --patch the payload opens in $EDITOR. The result is
    validated against the event's schema before anything is sent. The copy
    gets a new id, the original event as its cause and the same correlation;
    the original entry is marked edited and cannot be retried again.
    Editing must be turned on first: `choreograph dlq settings --editing on`.

    A signed event's copy is signed again with SOURCE's key from --keys DIR
    (or $CHOREOGRAPH_KEYS_DIR, $CHOREOGRAPH_SIGNING_KEYS, the --app's ring);
    an encrypted one is decrypted and encrypted again with the --app's key
    store. Without them the edit is refused and nothing is sent.
    """
    if set_ and patch is not None:
        raise fail("give --set or --patch, not both", 2)

    @run_async
    async def main() -> None:
        async with opened_broker(broker) as target:
            desk = DeadLetterDesk(target, actor=actor)
            if not await desk.editing_enabled():
                raise EditingDisabled()
            letter = await desk.letters.dead_letter(dead_letter_id)
            try:
                original = codec.decode(letter.value)
            except DecodeError as exc:
                raise ConfigurationError(f"dead letter {dead_letter_id} holds no readable event: {exc}") from None
            before, seal = await _unsealed_payload(original, letter, app_spec, keys, source)
            after = orjson.loads(orjson.dumps(before))  # a deep copy to change
            if patch is not None:
                try:
                    after = merge_patch(after, orjson.loads(patch.read_bytes()))
                except (OSError, orjson.JSONDecodeError) as exc:
                    raise ConfigurationError(f"--patch {patch}: {exc}") from None
            elif set_:
                for assignment in set_:
                    after = set_path(after, assignment)
            else:
                after = _edit_in_editor(after)
            changes = changed_paths(before, after)
            if not changes:
                out.print("no change: nothing sent")
                raise typer.Exit(EXIT_FAILED)
            out.print(f"changed: {safe(', '.join(changes))}")
            if not yes and not typer.confirm("Send the edited event?"):
                raise typer.Exit(EXIT_FAILED)
            result = await desk.edit(letter, after, validate=validator(broker, app_spec), seal=seal)
        out.print(
            f"sent event {safe(result.new_event_id)} (caused by {safe(result.original_event_id)}); "
            f"dead letter {safe(result.dead_letter_id)} marked edited"
        )

    main()


@dlq.command()
def settings(
    editing: Annotated[
        str | None, typer.Option(metavar="on|off", help="Allow edit-and-retry for this deployment.")
    ] = None,
    actor: ActorOption = None,
    broker: BrokerOption = None,
) -> None:
    """Show or change the deployment's dead-letter settings (stored with the broker; changes are audited)."""
    if editing not in (None, "on", "off"):
        raise fail("--editing takes on or off", 2)

    @run_async
    async def main() -> None:
        async with opened_broker(broker) as target:
            desk = DeadLetterDesk(target, actor=actor)
            if editing is not None:
                await desk.set_editing(editing == "on")
            enabled = await desk.editing_enabled()
        out.print(f"editing: {'on' if enabled else 'off'}")

    main()
