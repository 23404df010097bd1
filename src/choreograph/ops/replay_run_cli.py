"""``choreograph replay run``: replay a bounded range through one handler of an App, as a new group.

Mounted under ``replay`` by :mod:`choreograph.ops.replay_cli`; the work is
:func:`choreograph.runtime.replay_group.replay_handler`.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from choreograph.core.errors import ConfigurationError
from choreograph.core.names import check_group
from choreograph.ops.dlq_common import ActorOption
from choreograph.ops.loader import load_app
from choreograph.ops.replay_args import parse_position, parse_time, usage_errors
from choreograph.ops.replay_progress import ReplayProgress
from choreograph.ops.session import opened_broker
from choreograph.ops.terminal import BrokerOption, emit_json, plain, run_async
from choreograph.runtime.audit import AuditLog
from choreograph.runtime.replay_group import replay_handler
from choreograph.runtime.replay_range import Filter, plan, resolve


def run_command(
    app_spec: Annotated[str, typer.Argument(metavar="MODULE:APP", help="The App whose handler replays.")],
    handler: Annotated[str, typer.Argument(help="The handler, as service.name (its consumer group).")],
    group: Annotated[str, typer.Option("--group", help="A new consumer group for the replay.")],
    start: Annotated[str, typer.Option("--from", help="earliest, epoch seconds, ISO time, or 0:120,1:98.")],
    until: Annotated[str | None, typer.Option("--until", help="Stop before records at or after this time.")] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds the replay may take.")] = 3600.0,
    pushgateway: Annotated[
        str | None, typer.Option("--pushgateway", metavar="URL", help="Push the replay metrics to this Pushgateway.")
    ] = None,
    actor: ActorOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print per partition what would replay.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the dry run or the report as JSON.")] = False,
    broker: BrokerOption = None,
) -> None:
    """Replay [--from, --until) of HANDLER's topic through HANDLER, in this process, as the new group --group.

    The group starts at --from; the handler's whole pipeline runs (inbox of the
    new group, retries, dead letters, outputs) and the command stops once the
    group has settled every record before --until (default: the log's end
    now); records past it are never handed to the handler. Outputs keep the
    ids the live run gave them (derived from the input and the handler), so
    downstream inboxes drop what they saw. Refuses a group that has positions.
    """
    with usage_errors():
        check_group(group)
        position = parse_position(start, "--from")
        end_time = None if until is None else parse_time(until, "--until")

    @run_async
    async def main() -> None:
        app = load_app(app_spec)
        try:
            async with opened_broker(broker or app.broker_url) as inner:
                spec = next((s for s in app.handlers if s.group == handler), None)
                if spec is None:
                    known = ", ".join(s.group for s in app.handlers) or "none"
                    raise ConfigurationError(f"no handler {handler!r} in {app_spec}; it has: {known}")
                topic = spec.topic
                bounds = await resolve(inner, topic, position, end_time)
                if dry_run:
                    found = await plan(inner, topic, bounds, Filter())
                    doc: dict[str, Any] = {"dry_run": True, "group": group, "topic": topic, "total": found.total}
                    doc["partitions"] = [p.to_doc() for p in found.partitions]
                    if as_json:
                        emit_json(doc)
                    else:
                        plain(f"{group} would replay {found.total} records of {topic} through {handler}")
                    return
                audit = AuditLog.of(inner)
                async with ReplayProgress(group, group=group, as_json=as_json, pushgateway=pushgateway) as shown:
                    done = await replay_handler(
                        app, inner, handler, group, bounds, progress=shown.tick, timeout=timeout
                    )
                await audit.record(
                    "replay", target=f"{handler} as {group} on {topic}", count=done, actor=actor,
                    details={"from": start, "until": until},
                )  # fmt: skip
        finally:
            await app.close()
        if as_json:
            emit_json({"dry_run": False, "group": group, "handler": handler, "replayed": done})
        else:
            plain(f"{handler} replayed {done} records of {topic} as group {group}")

    main()
