"""``choreograph dlq``: inspect, resubmit and purge dead letters."""

from __future__ import annotations

import base64
from collections import Counter
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table
from rich.text import Text

from choreograph.core.broker import Broker, DeadLetter, DeadLetterStore
from choreograph.core.errors import ConfigurationError
from choreograph.core.printable import printable
from choreograph.ops.session import opened_broker
from choreograph.ops.terminal import EXIT_FAILED, BrokerOption, cell, emit_json, fail, fmt_time, out, run_async, safe

dlq = typer.Typer(help="Dead letters: list them grouped by cause, show one, resubmit, purge.", no_args_is_help=True)


def _store(broker: Broker) -> DeadLetterStore:
    if not isinstance(broker, DeadLetterStore):
        raise ConfigurationError(f"this broker ({type(broker).__name__}) keeps no dead letters")
    return broker


JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document per line (for scripts).")]


def dead_letter_doc(entry: DeadLetter, *, full: bool = False) -> dict[str, Any]:
    """Return a dead letter as a JSON-ready dict; ``full`` adds the stack, headers and original value.

    The value is given as the JSON it holds (``value``) or, when it holds none,
    as base64 (``value_base64``).
    """
    doc: dict[str, Any] = {
        "id": entry.id,
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
        "error_message": entry.error_message,
        "attempts": entry.attempts,
        "first_failure": entry.first_failure,
        "last_failure": entry.last_failure,
        "status": entry.status,
        "predecessor": getattr(entry, "predecessor", None),
    }
    if full:
        doc["stack"] = entry.stack
        doc["headers"] = dict(entry.headers)
        try:
            doc["value"] = orjson.loads(entry.value)
        except orjson.JSONDecodeError:
            doc["value_base64"] = base64.b64encode(entry.value).decode("ascii")
    return doc


@dlq.command("list")
def list_(
    group: Annotated[str | None, typer.Option(help="Only this consumer group (service.handler).")] = None,
    status: Annotated[str, typer.Option(help="open, resubmitted, purged or all.")] = "open",
    limit: Annotated[int, typer.Option(help="Most entries to show.")] = 100,
    as_json: JsonOption = False,
    broker: BrokerOption = None,
) -> None:
    """List dead letters, oldest first, with a count per (group, reason, error type).

    ``--json`` prints one document per dead letter (without stack and value; see ``dlq show --json``).
    """
    if status not in {"open", "resubmitted", "purged", "all"}:
        raise fail(f"--status {status!r}: use open, resubmitted, purged or all", 2)

    @run_async
    async def main() -> None:
        async with opened_broker(broker) as target:
            entries = await _store(target).dead_letters(
                group=group, status=None if status == "all" else status, limit=limit
            )
        if as_json:
            for entry in entries:
                emit_json(dead_letter_doc(entry))
            return
        table = Table(
            "id", "group", "type", "reason", "error", "attempts", "last failure", "status", title="Dead letters"
        )
        for entry in entries:
            table.add_row(
                cell(entry.id),
                cell(entry.group),
                cell(entry.event_type or "?"),
                cell(entry.reason),
                cell(f"{entry.error_type}: {entry.error_message}"[:60]),
                str(entry.attempts),
                fmt_time(entry.last_failure),
                cell(entry.status),
            )
        out.print(table)
        causes = Counter((e.group, e.reason, e.error_type) for e in entries)
        if causes:
            summary = Table("group", "reason", "error type", "count", title="By cause")
            for (g, reason, etype), count in causes.most_common():
                summary.add_row(cell(g), cell(reason), cell(etype), str(count))
            out.print(summary)

    main()


@dlq.command()
def show(
    dead_letter_id: Annotated[str, typer.Argument(metavar="ID")],
    as_json: JsonOption = False,
    broker: BrokerOption = None,
) -> None:
    """Show one dead letter: where it came from, the error with its stack, and the original message.

    ``--json`` prints it as one JSON document, with its headers and original value.
    """

    @run_async
    async def main() -> None:
        async with opened_broker(broker) as target:
            entry = await _store(target).dead_letter(dead_letter_id)
        if as_json:
            emit_json(dead_letter_doc(entry, full=True))
            return
        for label, value in (
            ("id", entry.id),
            ("status", entry.status),
            ("topic", f"{entry.topic} partition {entry.partition} offset {entry.offset}"),
            ("group", entry.group),
            ("handler", entry.handler),
            ("event", f"{entry.event_type} {entry.event_id}"),
            ("key", entry.key),
            ("reason", entry.reason),
            ("error", f"{entry.error_type}: {entry.error_message}"),
            ("attempts", entry.attempts),
            ("first failure", fmt_time(entry.first_failure)),
            ("last failure", fmt_time(entry.last_failure)),
        ):
            out.print(f"[bold]{label:>14}[/]  {safe(value)}", soft_wrap=True)
        out.print("[bold]         stack[/]")
        # A stack is many lines by nature: each is shown as text, controls visible, and
        # indented, so no line of it can pass for a line of this view.
        for line in entry.stack.rstrip().split("\n"):
            out.print(Text("    " + printable(line)), soft_wrap=True)
        out.print("[bold]       message[/]")
        out.print(cell(entry.value.decode(errors="replace")), soft_wrap=True)

    main()


@dlq.command()
def retry(
    ids: Annotated[list[str] | None, typer.Argument(metavar="[ID]...", help="Entries to resubmit.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Resubmit every open entry (of --group).")] = False,
    group: Annotated[str | None, typer.Option(help="With --all: only this group.")] = None,
    broker: BrokerOption = None,
) -> None:
    """Hand dead letters back to the group that gave up on them, with their original ids.

    Idempotent: an entry already resubmitted is skipped, and the group's inbox
    drops an event it has already processed, so nothing is processed twice.
    """
    if not ids and not all_:
        raise fail("name dead-letter IDs or pass --all", 2)

    @run_async
    async def main() -> None:
        async with opened_broker(broker) as target:
            store = _store(target)
            chosen = list(ids or [])
            if all_:
                chosen += [e.id for e in await store.dead_letters(group=group, status="open", limit=1_000_000)]
            done = skipped = 0
            for entry_id in chosen:
                if await store.resubmit(entry_id):
                    done += 1
                else:
                    skipped += 1
        out.print(f"resubmitted {done}; skipped {skipped} already resubmitted or purged")
        if skipped and not done and ids:
            raise typer.Exit(EXIT_FAILED)

    main()


@dlq.command()
def purge(
    ids: Annotated[list[str] | None, typer.Argument(metavar="[ID]...", help="Entries to purge.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Purge every open entry.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    delete: Annotated[
        bool,
        typer.Option(
            "--delete",
            help="Delete the entries and their bytes for good, whatever their status (with --all: every entry); "
            "to erase personal data. Asks for confirmation unless --yes.",
        ),
    ] = False,
    broker: BrokerOption = None,
) -> None:
    """Mark dead letters purged: they are kept for audit but no longer listed as open.

    With --delete they are removed instead, bytes included, and cannot be shown or resubmitted again.
    """
    if not ids and not all_:
        raise fail("name dead-letter IDs or pass --all", 2)
    if delete and not yes:
        what = "every dead letter (any status)" if all_ else f"{len(ids or [])} dead letter(s)"
        if not typer.confirm(f"Delete {what} for good?"):
            raise typer.Exit(EXIT_FAILED)
    elif all_ and not yes and not typer.confirm("Purge every open dead letter?"):
        raise typer.Exit(EXIT_FAILED)

    @run_async
    async def main() -> None:
        async with opened_broker(broker) as target:
            count = await _store(target).purge(None if all_ else list(ids or []), delete=delete)
        out.print(f"{'deleted' if delete else 'purged'} {count}")

    main()


def register(cli: typer.Typer) -> None:
    """Add the ``dlq`` command group to ``cli``."""
    cli.add_typer(dlq, name="dlq")
