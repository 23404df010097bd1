"""What the ``dlq`` commands share: the Typer group, options, selection by id or failure group, JSON form."""

from __future__ import annotations

import base64
from typing import Annotated, Any

import orjson
import typer

from choreograph.core.broker import DeadLetter
from choreograph.core.fingerprint import fingerprint, is_fingerprint
from choreograph.core.redaction import redact_options
from choreograph.ops.terminal import fail, scrub
from choreograph.runtime.dead_letters import DeadLetterDesk

dlq = typer.Typer(
    help="Dead letters: failure groups, list, show, retry (paced), edit and retry, archive, notes, history, purge.",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document per line (for scripts).")]
ActorOption = Annotated[
    str | None,
    typer.Option(
        "--actor",
        metavar="NAME",
        help="Who is acting, for the audit trail (default: the OS user running the command).",
    ),
]
IdsArgument = Annotated[list[str] | None, typer.Argument(metavar="[ID]...", help="Dead-letter ids.")]
GroupOption = Annotated[
    str | None,
    typer.Option(
        "--group",
        "-g",
        metavar="FP|GROUP",
        help="A failure group's fingerprint (16 hex digits, from `dlq groups`), or a consumer group's "
        "name (service.handler) to narrow to one handler.",
    ),
]


def split_group(value: str | None) -> tuple[str | None, str | None]:
    """Read ``--group``: (failure-group fingerprint, consumer group); at most one is set.

    A consumer group's name always holds a dot and a fingerprint never does, so the two cannot be confused.
    """
    if value is None:
        return None, None
    if is_fingerprint(value):
        return value, None
    if "." not in value:
        raise fail(f"--group {value!r}: give a fingerprint (16 hex digits, see `dlq groups`) or service.handler", 2)
    return None, value


def needs_selection(ids: list[str] | None, group: str | None, all_: bool = False) -> None:
    """Refuse a command that names nothing to act on."""
    if not ids and group is None and not all_:
        raise fail("name dead-letter IDs, a failure group (--group FP) or pass --all", 2)


async def chosen(
    desk: DeadLetterDesk,
    ids: list[str] | None,
    group: str | None,
    *,
    all_: bool = False,
    archived: bool = False,
) -> tuple[list[DeadLetter], str, str | None]:
    """The entries a command acts on, a description of them for the audit trail, and the fingerprint if any.

    ``--group FP`` selects the open entries of that failure group; ``--group
    service.handler`` with ``--all`` the open entries of that consumer group.
    """
    fp, consumer_group = split_group(group)
    if consumer_group is not None and not all_:
        raise fail("--group service.handler narrows --all; for one failure group give its fingerprint", 2)
    letters = await desk.select(ids or [], group=fp, archived=archived)
    parts = [f"{len(ids)} id(s)"] if ids else []
    if fp is not None:
        parts.append(f"group {fp}")
    if all_:
        letters += [
            d
            for d in await desk.entries(consumer_group=consumer_group, archived=archived)
            if d.id not in {x.id for x in letters}
        ]
        parts.append(f"all open{f' of {consumer_group}' if consumer_group else ''}")
    return letters, ", ".join(parts), fp


def dead_letter_doc(entry: DeadLetter, *, full: bool = False) -> dict[str, Any]:
    """Return a dead letter as a JSON-ready dict; ``full`` adds the stack, headers and original value.

    Credentials are hidden: the broker URLs' secrets in the message and stack,
    and headers whose names say they hold one (``authorization``, ``token``...).

    The value is given as the JSON it holds (``value``) or, when it holds none,
    as base64 (``value_base64``).
    """
    doc: dict[str, Any] = {
        "id": entry.id,
        "fingerprint": fingerprint(entry),
        "group": entry.group,
        "handler": entry.handler,
        "topic": entry.topic,
        "partition": entry.partition,
        "offset": entry.offset,
        "key": entry.key,
        "event_id": entry.event_id,
        "event_type": entry.event_type,
        "reason": entry.reason,
        "error_type": entry.error_type,
        "error_message": scrub(entry.error_message),
        "attempts": entry.attempts,
        "first_failure": entry.first_failure,
        "last_failure": entry.last_failure,
        "status": entry.status,
        "predecessor": getattr(entry, "predecessor", None),
    }
    if full:
        doc["stack"] = scrub(entry.stack)
        doc["headers"] = redact_options(entry.headers)
        try:
            doc["value"] = orjson.loads(entry.value)
        except orjson.JSONDecodeError:
            doc["value_base64"] = base64.b64encode(entry.value).decode("ascii")
    return doc
