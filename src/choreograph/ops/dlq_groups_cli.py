"""``choreograph dlq groups / archive / restore / expire / note / history``: dead letters by failure group."""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from choreograph.core.fingerprint import FailureGroup, is_fingerprint
from choreograph.core.printable import printable
from choreograph.ops.audit_cli import record_cells, record_doc
from choreograph.ops.dlq_common import (
    ActorOption,
    GroupOption,
    IdsArgument,
    JsonOption,
    chosen,
    dlq,
    needs_selection,
)
from choreograph.ops.session import opened_broker
from choreograph.ops.terminal import BrokerOption, cell, emit_json, fail, fmt_time, out, run_async, scrub
from choreograph.runtime.dead_letters import DeadLetterDesk
from choreograph.runtime.parking import SequencedParking

DLQ_ACTIONS = ("retry", "edit", "archive", "restore", "expire", "note", "unblock", "purge", "delete", "settings")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Read ``30d``, ``12h``, ``90m``, ``45s`` or plain seconds."""
    match = _DURATION.fullmatch(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise fail(f"{text!r} is not a duration: use e.g. 14d, 12h, 90m or seconds", 2)
    return float(match.group(1)) * _UNITS[match.group(2)]


def group_doc(group: FailureGroup, note: dict[str, Any] | None) -> dict[str, Any]:
    """A failure group as a JSON-ready dict (``--json``); the sample message has credentials hidden."""
    return {
        "fingerprint": group.fingerprint,
        "title": group.title,
        "group": group.group,
        "reason": group.reason,
        "error_type": group.error_type,
        "frame": group.frame,
        "count": group.count,
        "first_seen": group.first_seen,
        "last_seen": group.last_seen,
        "sample_id": group.sample_id,
        "sample_message": scrub(group.sample_message),
        "event_types": sorted(group.event_types),
        "note": note.get("text") if note else None,
    }


@dlq.command()
def groups(
    archived: Annotated[bool, typer.Option("--archived", help="Group the archived entries instead.")] = False,
    as_json: JsonOption = False,
    broker: BrokerOption = None,
) -> None:
    """Open dead letters grouped by failure: handler, reason, exception type and the first frame in user code.

    Each group has a fingerprint (stable across processes and deploys that
    move lines) that every dlq command takes as --group FP, a count, first
    and last seen, a sample entry and its note. Largest group first.
    """

    @run_async
    async def main() -> None:
        async with opened_broker(broker) as target:
            desk = DeadLetterDesk(target)
            found = await desk.groups(archived=archived)
            notes = await desk.notes()
        if as_json:
            for group in found:
                emit_json(group_doc(group, notes.get(group.fingerprint)))
            return
        table = Table(title="Failure groups (archived)" if archived else "Failure groups")
        # The fingerprint is what an operator copies: never cut, whatever the width. The
        # failure cell holds the title, the sample id and the note, one per line.
        table.add_column("fingerprint", no_wrap=True, min_width=16)
        table.add_column("count", justify="right")
        table.add_column("first / last seen", no_wrap=True)
        table.add_column("failure · sample · note", overflow="fold")
        for group in found:
            note = notes.get(group.fingerprint)
            lines = [printable(group.title), f"sample {printable(group.sample_id)}"]
            if note:
                lines.append(f"note: {printable(note.get('text', ''))}")
            table.add_row(
                cell(group.fingerprint),
                str(group.count),
                f"{fmt_time(group.first_seen)[:19]}\n{fmt_time(group.last_seen)[:19]}",
                Text("\n".join(lines)),
            )
        out.print(table)
        if found:
            out.print("Retry one with `choreograph dlq retry --group FINGERPRINT --rate 10`.")

    main()


@dlq.command()
def archive(
    ids: IdsArgument = None,
    group: GroupOption = None,
    retention: Annotated[
        str, typer.Option(metavar="DURATION", help="Keep archived entries this long (14d, 12h, seconds).")
    ] = "14d",
    actor: ActorOption = None,
    broker: BrokerOption = None,
) -> None:
    """Archive dead letters (soft delete): hidden from listings, groups and retries until restored.

    `dlq expire` deletes archived entries once their retention has passed;
    until then `dlq restore` brings them back. Recorded in the audit trail.
    """
    needs_selection(ids, group)
    seconds = parse_duration(retention)

    @run_async
    async def main() -> None:
        async with opened_broker(broker) as target:
            desk = DeadLetterDesk(target, actor=actor)
            desk.meta()
            letters, what, fp = await chosen(desk, ids, group)
            count = await desk.archive(letters, retention=seconds, target=what, group=fp)
        out.print(f"archived {count} (kept {retention}; restore with `choreograph dlq restore`)")

    main()


@dlq.command()
def restore(
    ids: IdsArgument = None,
    group: GroupOption = None,
    actor: ActorOption = None,
    broker: BrokerOption = None,
) -> None:
    """Bring archived dead letters back (by id, or every archived entry of --group FP); audited."""
    needs_selection(ids, group)

    @run_async
    async def main() -> None:
        async with opened_broker(broker) as target:
            desk = DeadLetterDesk(target, actor=actor)
            desk.meta()
            letters, what, fp = await chosen(desk, ids, group, archived=True)
            count = await desk.restore(letters, target=what, group=fp)
        out.print(f"restored {count}")

    main()


@dlq.command()
def expire(actor: ActorOption = None, broker: BrokerOption = None) -> None:
    """Delete, bytes included, the archived dead letters whose retention has passed; audited.

    Run it from a scheduler (cron, a Kubernetes CronJob) to enforce the retention.
    """

    @run_async
    async def main() -> None:
        async with opened_broker(broker) as target:
            count = await DeadLetterDesk(target, actor=actor).expire()
        out.print(f"deleted {count} archived past their retention")

    main()


@dlq.command()
def note(
    fingerprint: Annotated[str, typer.Argument(metavar="FP", help="The failure group's fingerprint.")],
    text: Annotated[str | None, typer.Argument(metavar="[TEXT]", help="The note; omit with --clear.")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the group's note.")] = False,
    actor: ActorOption = None,
    broker: BrokerOption = None,
) -> None:
    """Put a note on a failure group (a ticket, what is known), shown by `dlq groups`; audited."""
    if not is_fingerprint(fingerprint):
        raise fail(f"{fingerprint!r} is not a fingerprint (16 hex digits, see `dlq groups`)", 2)
    if (text is None) == (not clear):
        raise fail("give the note's TEXT, or --clear", 2)
    if text is not None and (len(text) > 2000 or not text.isprintable()):
        raise fail("a note is one line of at most 2000 printable characters", 2)

    @run_async
    async def main() -> None:
        async with opened_broker(broker) as target:
            await DeadLetterDesk(target, actor=actor).note(fingerprint, None if clear else text)
        out.print("note cleared" if clear else "note saved")

    main()


@dlq.command()
def history(
    group: Annotated[
        str | None, typer.Option("--group", "-g", metavar="FP", help="Only actions on this failure group.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Most actions to show (the most recent).")] = 50,
    as_json: JsonOption = False,
    broker: BrokerOption = None,
) -> None:
    """Past dead-letter actions (retries, edits, archives, purges, notes), newest last.

    For each retry, "failed again" counts the retried entries that have since
    come back as dead letters (a retry of them failed).
    """
    if group is not None and not is_fingerprint(group):
        raise fail(f"--group {group!r} is not a fingerprint (16 hex digits, see `dlq groups`)", 2)

    @run_async
    async def main() -> None:
        async with opened_broker(broker) as target:
            desk = DeadLetterDesk(target)
            records = [
                r
                for r in await desk.audit.records(limit=100_000)
                if r.action in DLQ_ACTIONS and (group is None or r.details.get("fingerprint") == group)
            ][-limit:]
            failed: dict[str, int] = {}
            retries = [r for r in records if r.action == "retry" and isinstance(r.details.get("ids"), list)]
            if retries:
                everything = await desk.letters.dead_letters(status=None, limit=10_000_000)
                for rec in retries:
                    failed[rec.id] = await desk.failed_again((str(i) for i in rec.details["ids"]), letters=everything)
        if as_json:
            for rec in records:
                emit_json({**record_doc(rec), "failed_again_since": failed.get(rec.id)})
            return
        table = Table("when", "who", "action", "what", "count", "failed again", title="Dead-letter history")
        for rec in records:
            table.add_row(*record_cells(rec), str(failed[rec.id]) if rec.id in failed else "")
        out.print(table)

    main()


@dlq.command()
def unblock(
    group: Annotated[str, typer.Argument(metavar="GROUP", help="The sequenced handler's group (service.handler).")],
    key: Annotated[str, typer.Argument(metavar="KEY", help="The partition key to unblock.")],
    actor: ActorOption = None,
    broker: BrokerOption = None,
) -> None:
    """Unblock a key of a sequenced handler whose blocking dead letter was purged instead of retried; audited.

    Its parked entries stay dead letters: retry them (`dlq retry --group FP`) to handle them.
    """

    @run_async
    async def main() -> None:
        async with opened_broker(broker) as target:
            desk = DeadLetterDesk(target, actor=actor)
            audit = desk.audit
            done = await SequencedParking(target).unblock(group, key)
            await audit.record("unblock", target=f"{group} key {key}", count=int(done), actor=actor)
        out.print("unblocked" if done else "that key was not blocked")

    main()
