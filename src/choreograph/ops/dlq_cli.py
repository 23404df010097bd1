"""``choreograph dlq``: list, show, retry and purge dead letters, by id or by failure group.

The failure-group commands (``groups``, ``archive``, ``restore``, ``expire``,
``note``, ``history``) live in :mod:`choreograph.ops.dlq_groups_cli`, and
edit-and-retry (``edit``, ``settings``) in :mod:`choreograph.ops.dlq_edit_cli`;
all hang on the one ``dlq`` group of :mod:`choreograph.ops.dlq_common`.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from choreograph.core.enums import DeadLetterStatus
from choreograph.core.errors import NotFound
from choreograph.core.fingerprint import fingerprint
from choreograph.core.printable import printable
from choreograph.core.redaction import redact_options
from choreograph.ops import dlq_edit_cli, dlq_groups_cli
from choreograph.ops.dlq_common import (
    ActorOption,
    GroupOption,
    IdsArgument,
    JsonOption,
    chosen,
    dead_letter_doc,
    dlq,
    needs_selection,
    split_group,
)
from choreograph.ops.session import opened_broker
from choreograph.ops.terminal import (
    EXIT_FAILED,
    BrokerOption,
    cell,
    emit_json,
    fail,
    fmt_time,
    out,
    run_async,
    safe,
    scrub,
)
from choreograph.runtime.dead_letters import DeadLetterDesk, RetryReport

__all__ = ["dead_letter_doc", "dlq", "dlq_edit_cli", "dlq_groups_cli", "register"]


@dlq.command("list")
def list_(
    group: GroupOption = None,
    status: Annotated[str, typer.Option(help="open, resubmitted, purged or all.")] = "open",
    archived: Annotated[bool, typer.Option("--archived", help="List archived entries instead.")] = False,
    limit: Annotated[int, typer.Option(help="Most entries to show.")] = 100,
    as_json: JsonOption = False,
    broker: BrokerOption = None,
) -> None:
    """List dead letters, oldest first, with their failure group (see `dlq groups`).

    Archived entries are left out unless --archived. ``--json`` prints one
    document per dead letter (without stack and value; see ``dlq show --json``).
    """
    if status not in {*DeadLetterStatus, "all"}:
        raise fail(f"--status {status!r}: use open, resubmitted, purged or all", 2)
    fp, consumer_group = split_group(group)

    @run_async
    async def main() -> None:
        async with opened_broker(broker) as target:
            desk = DeadLetterDesk(target)
            entries = await desk.entries(
                status=None if status == "all" else status,
                consumer_group=consumer_group,
                archived=archived,
                limit=None if fp else limit,
            )
        if fp is not None:
            entries = [e for e in entries if fingerprint(e) == fp]
        entries = entries[:limit]
        if as_json:
            for entry in entries:
                emit_json(dead_letter_doc(entry))
            return
        table = Table("id", "failure group", "group", "type", "reason", "error", "attempts", "last failure", "status")
        table.title = "Dead letters (archived)" if archived else "Dead letters"
        for entry in entries:
            table.add_row(
                cell(entry.id),
                cell(fingerprint(entry)),
                cell(entry.group),
                cell(entry.event_type or "?"),
                cell(entry.reason),
                cell(f"{entry.error_type}: {scrub(entry.error_message)}"[:60]),
                str(entry.attempts),
                fmt_time(entry.last_failure),
                cell(entry.status),
            )
        out.print(table)
        if entries:
            out.print("Group them by cause with `choreograph dlq groups`.")

    main()


@dlq.command()
def show(
    dead_letter_id: Annotated[
        str | None, typer.Argument(metavar="[ID]", help="The dead letter's id (from `dlq list`); or give --group.")
    ] = None,
    group: Annotated[
        str | None, typer.Option("--group", "-g", metavar="FP", help="Show this failure group's sample entry.")
    ] = None,
    as_json: JsonOption = False,
    broker: BrokerOption = None,
) -> None:
    """Show one dead letter: where it came from, its failure group, the error with its stack, and the message.

    Name it by ID, or give --group FP for that group's sample (its most recent
    entry). ``--json`` prints it as one JSON document, with its headers and
    original value. Credentials are hidden in the error, the stack and the headers.
    """
    if (dead_letter_id is None) == (group is None):
        raise fail("name one dead-letter ID or a failure group (--group FP)", 2)

    @run_async
    async def main() -> None:
        async with opened_broker(broker) as target:
            desk = DeadLetterDesk(target)
            if dead_letter_id is not None:
                entry = await desk.letters.dead_letter(dead_letter_id)
            else:
                found = [g for g in await desk.groups() if g.fingerprint == group]
                if not found:
                    raise NotFound(f"no open failure group {group} (see `choreograph dlq groups`)")
                entry = await desk.letters.dead_letter(found[0].sample_id)
            edited = await desk.edited(entry.id)
            archived = entry.id in await desk.archived()
        doc = dead_letter_doc(entry, full=True)
        if as_json:
            emit_json({**doc, "edited": edited, "archived": archived})
            return
        status = entry.status + (" (archived)" if archived else "")
        if edited:
            status += f" (edited: sent as event {edited.get('new_event_id')})"
        for label, value in (
            ("id", entry.id),
            ("status", status),
            ("failure group", doc["fingerprint"]),
            ("topic", f"{entry.topic} partition {entry.partition} offset {entry.offset}"),
            ("group", entry.group),
            ("handler", entry.handler),
            ("event", f"{entry.event_type} {entry.event_id}"),
            ("key", entry.key),
            ("reason", entry.reason),
            ("error", f"{entry.error_type}: {doc['error_message']}"),
            ("attempts", entry.attempts),
            ("retry of", entry.predecessor or "-"),
            ("first failure", fmt_time(entry.first_failure)),
            ("last failure", fmt_time(entry.last_failure)),
        ):
            out.print(f"[bold]{label:>14}[/]  {safe(value)}", soft_wrap=True)
        out.print("[bold]         stack[/]")
        # A stack is many lines by nature: each is shown as text, controls visible, and
        # indented, so no line of it can pass for a line of this view.
        for line in str(doc["stack"]).rstrip().split("\n"):
            out.print(Text("    " + printable(line)), soft_wrap=True)
        out.print("[bold]       headers[/]")
        for name, value in redact_options(entry.headers).items():
            out.print(Text(f"    {printable(name)}: {printable(value)}"), soft_wrap=True)
        out.print("[bold]       message[/]")
        out.print(cell(entry.value.decode(errors="replace")), soft_wrap=True)

    main()


class _Progress:
    """Retry progress: a Rich bar on a terminal, else a plain line about every tenth of the way."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.bar: Progress | None = None
        self._task: TaskID | None = None
        self._shown = 0
        if out.is_terminal and total:
            self.bar = Progress(
                TextColumn("retrying"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=out,
                transient=True,
            )
            self._task = self.bar.add_task("retry", total=total)

    def __enter__(self) -> _Progress:
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def __call__(self, done: int, total: int) -> None:
        if self.bar is not None and self._task is not None:
            self.bar.update(self._task, completed=done)
            return
        step = max(1, total // 10)
        if total > 1 and (done == total or done - self._shown >= step):
            self._shown = done
            out.print(f"retry progress: {done}/{total}")


def _report(report: RetryReport) -> str:
    parts = [f"resubmitted {len(report.retried)}"]
    if report.failed_again:
        parts.append(f"{report.failed_again} of them had failed again after an earlier retry")
    parts.append(f"skipped {len(report.skipped)} already resubmitted or purged")
    if report.archived:
        parts.append(f"left {len(report.archived)} archived (restore them first)")
    return "; ".join(parts)


@dlq.command()
def retry(
    ids: IdsArgument = None,
    group: GroupOption = None,
    all_: Annotated[bool, typer.Option("--all", help="Every open entry (of --group service.handler).")] = False,
    rate: Annotated[
        float | None, typer.Option(metavar="PER_SECOND", help="Resubmit at most this many entries per second.")
    ] = None,
    actor: ActorOption = None,
    broker: BrokerOption = None,
) -> None:
    """Hand dead letters back to the group that gave up on them, with their original ids.

    Name entries by id, by failure group (--group FP, every open entry of it),
    or --all. Idempotent: an entry already resubmitted is skipped, and the
    group's inbox drops an event it has already processed, so nothing is
    processed twice. Archived entries are not retried. The report says how
    many were retried, how many of those had failed again after an earlier
    retry, and how many were skipped; the action is recorded in the audit trail.
    """
    needs_selection(ids, group, all_)

    @run_async
    async def main() -> None:
        async with opened_broker(broker) as target:
            desk = DeadLetterDesk(target, actor=actor)
            desk.meta()  # refuse before reading anything when the action could not be audited
            letters, what, fp = await chosen(desk, ids, group, all_=all_)
            with _Progress(len(letters)) as progress:
                report = await desk.retry(letters, rate=rate, target=what, group=fp, on_progress=progress)
        out.print(_report(report))
        if ids and not report.retried and (report.skipped or report.archived):
            raise typer.Exit(EXIT_FAILED)

    main()


@dlq.command()
def purge(
    ids: IdsArgument = None,
    group: GroupOption = None,
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
    actor: ActorOption = None,
    broker: BrokerOption = None,
) -> None:
    """Mark dead letters purged: they are kept for audit but no longer listed as open.

    With --delete they are removed instead, bytes included, and cannot be
    shown or resubmitted again. Name entries by id, by failure group
    (--group FP) or --all; the action is recorded in the audit trail.
    """
    needs_selection(ids, group, all_)
    fp, _ = split_group(group)
    if delete and not yes:
        what = (
            "every dead letter (any status)"
            if all_
            else f"every open dead letter of group {fp}"
            if fp
            else f"{len(ids or [])} dead letter(s)"
        )
        if not typer.confirm(f"Delete {what} for good?"):
            raise typer.Exit(EXIT_FAILED)
    elif (all_ or fp) and not yes and not typer.confirm("Purge every open dead letter named?"):
        raise typer.Exit(EXIT_FAILED)

    @run_async
    async def main() -> None:
        async with opened_broker(broker) as target:
            desk = DeadLetterDesk(target, actor=actor)
            desk.meta()
            if all_ and group is None:
                count = await desk.purge(None, delete=delete, target="all")
            else:
                # Named ids go as they are (an absent one counts 0), plus the members of --group.
                letters, what, fp_ = await chosen(desk, None, group, all_=all_)
                named = list(dict.fromkeys([*(ids or []), *(d.id for d in letters)]))
                if ids:
                    what = ", ".join(x for x in (f"{len(ids)} id(s)", what) if x)
                count = await desk.purge(named, delete=delete, target=what, group=fp_) if named else 0
        out.print(f"{'deleted' if delete else 'purged'} {count}")

    main()


def register(cli: typer.Typer) -> None:
    """Add the ``dlq`` command group to ``cli``."""
    cli.add_typer(dlq, name="dlq")
