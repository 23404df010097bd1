"""``choreograph audit``: the trail of operator actions stored with the broker (who, when, what, how many)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from choreograph.core.redaction import redact_options
from choreograph.ops.session import opened_broker
from choreograph.ops.terminal import BrokerOption, cell, emit_json, fail, fmt_time, out, run_async, scrub
from choreograph.runtime.audit import ACTIONS, AuditLog, AuditRecord

LimitOption = Annotated[int, typer.Option(min=1, help="Most records to show (the most recent).")]


def record_doc(rec: AuditRecord) -> dict[str, Any]:
    """A record as ``--json`` shows it: the target's broker URLs and credential-named details redacted."""
    doc = rec.to_doc()
    return {**doc, "target": scrub(rec.target), "details": redact_options(doc["details"])}


def record_cells(rec: AuditRecord) -> list[str | Text]:
    """The when, who, action, what and count cells of a record's table row (untrusted text escaped)."""
    return [fmt_time(rec.at), cell(rec.actor), cell(rec.action), cell(scrub(rec.target)), str(rec.count)]


def audit(
    action: Annotated[
        str | None, typer.Option(metavar="ACTION", help=f"Only this action: {', '.join(sorted(ACTIONS))}.")
    ] = None,
    limit: LimitOption = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document per line (for scripts).")] = False,
    broker: BrokerOption = None,
) -> None:
    """Show the audit trail: every replay, reset, retry, edit, archive, purge and delete, oldest first.

    Records are kept in the broker's key-value store, so every operator sees
    the same trail. A backend without a key-value store keeps none (exit 2).
    Broker URLs and credential-named details in records are shown redacted.
    """
    if action is not None and action not in ACTIONS:
        raise fail(f"--action {action!r}: use one of {', '.join(sorted(ACTIONS))}", 2)

    @run_async
    async def main() -> None:
        async with opened_broker(broker) as target:
            records = await AuditLog.of(target).records(action=action, limit=limit)
        if as_json:
            for rec in records:
                emit_json(record_doc(rec))
            return
        table = Table("when", "who", "action", "what", "count", "details", title="Audit trail")
        for rec in records:
            shown = redact_options(rec.details)
            details = ", ".join(f"{k}={v}" for k, v in shown.items() if k != "ids" and v not in (None, False))
            table.add_row(*record_cells(rec), cell(scrub(details)))
        out.print(table)

    main()


def register(cli: typer.Typer) -> None:
    """Add the ``audit`` command to ``cli``."""
    cli.command("audit")(audit)
