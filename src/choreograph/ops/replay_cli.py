"""``choreograph replay``: reset a consumer group, start a new group on a range, copy a range elsewhere.

Three commands, one semantics on every backend (see docs/replay.md):

* ``replay reset GROUP TOPIC --to POS`` moves a group's committed positions
  (:class:`~choreograph.core.group_admin.GroupAdmin`); running members are
  fenced: a settle of what they fetched before the reset is refused whole,
  and they read on from the new position.
* ``replay group GROUP TOPIC --from POS`` starts a group that never read the
  topic at a position (a reset of a new group); it refuses a group that has
  positions already.
* ``replay copy TOPIC --to-topic T [--to-broker URL]`` copies a bounded,
  filtered range, keeping ids and per-key order, paced by ``--rate``, with a
  progress bar, resumable after an interruption (:mod:`choreograph.runtime.replay`).

``--dry-run`` prints what would move, per partition (count, first and last
time), and an estimated duration; nothing moves. ``--json`` prints the dry run
and the final report as one JSON document.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from choreograph.brokers import open_broker
from choreograph.core.broker import Broker, LagReporter, TopicAdmin
from choreograph.core.errors import ChoreographError, ConfigurationError, UnknownTopic
from choreograph.core.group_admin import GroupAdmin, PartitionReset
from choreograph.core.names import check_group, check_topic
from choreograph.core.redaction import redact_url
from choreograph.ops.dlq_common import ActorOption
from choreograph.ops.log_cli import require
from choreograph.ops.replay_args import (
    MAX_NAME,
    check_replay_name,
    parse_offset_ranges,
    parse_position,
    parse_time,
    usage_errors,
)
from choreograph.ops.replay_progress import ReplayProgress
from choreograph.ops.replay_run_cli import run_command
from choreograph.ops.session import opened_broker
from choreograph.ops.terminal import EXIT_USAGE, BrokerOption, emit_json, fail, fmt_time, out, plain, run_async
from choreograph.runtime.audit import AuditLog
from choreograph.runtime.replay import Checkpoints, CopyJob, CopyReport, checkpoints_for, copy_range
from choreograph.runtime.replay_range import (
    Bounds,
    Filter,
    Plan,
    check_rate,
    plan,
    record_offsets,
    records_before,
    resolve,
    with_end_offsets,
)

replay_app = typer.Typer(
    name="replay",
    help="Reset a consumer group, start a new group on a range, or copy a range to another topic or broker.",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print the dry run or the final report as JSON.")]
FollowOption = Annotated[
    bool,
    typer.Option("--follow", help="Then show the group's progress through the range (and its metrics) until done."),
]
TimeoutOption = Annotated[float, typer.Option("--timeout", help="Seconds --follow waits for the group to finish.")]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="Print per partition what would move and an estimate; move nothing.")
]
FOLLOW_INTERVAL = 0.5
"""Seconds between two reads of a followed group's positions."""
PushOption = Annotated[
    str | None, typer.Option("--pushgateway", metavar="URL", help="Push the replay metrics to this Pushgateway.")
]


class ReplayTimeout(ChoreographError):
    """A followed group did not read its replayed range in time."""


@dataclass(frozen=True, slots=True)
class Follow:
    """``--follow``, ``--timeout``, ``--pushgateway`` and ``--actor`` of ``reset`` and ``group``."""

    on: bool
    timeout: float
    pushgateway: str | None
    actor: str | None = None


def _plan_table(title: str, found: Plan, resets: list[PartitionReset] | None = None) -> Table:
    columns = ["partition", *(["before"] if resets is not None else []), "first offset", "end offset", "records"]
    table = Table(*columns, "first time", "last time", title=title)
    before = {r.partition: r.before for r in resets or []}
    for part in found.partitions:
        was = (
            [("-" if before.get(part.partition) is None else str(before[part.partition]))] if resets is not None else []
        )
        table.add_row(
            str(part.partition),
            *was,
            str(part.first),
            str(part.end),
            str(part.count),
            fmt_time(part.first_time),
            fmt_time(part.last_time),
        )
    return table


def _plan_doc(found: Plan, estimate: float | None, **extra: Any) -> dict[str, Any]:
    return {
        **extra,
        "topic": found.topic,
        "partitions": [p.to_doc() for p in found.partitions],
        "total": found.total,
        "estimated_seconds": None if estimate is None else round(estimate, 3),
    }


def _estimate_line(found: Plan, estimate: float | None, rate: float | None) -> str:
    if estimate is None:
        return f"{found.total} records; no estimate (nothing to read)"
    if rate:
        return f"{found.total} records; estimated {estimate:.2f} s at --rate {rate:g}/s"
    return f"{found.total} records; at least {estimate:.2f} s (the read speed this dry run measured; writes add to it)"


async def _timed_plan(broker: Broker, topic: str, bounds: Bounds, accept: Filter) -> tuple[Plan, float | None]:
    started = time.monotonic()
    found = await plan(broker, topic, bounds, accept)
    read = sum(b.end - b.first for b in found.partitions)
    seconds = time.monotonic() - started
    return found, (read / seconds if read and seconds > 0 else None)


# -- reset and group ------------------------------------------------------------------


def reset(
    group: Annotated[str, typer.Argument(help="Consumer group to move.")],
    topic: Annotated[str, typer.Argument(help="Topic whose positions move.")],
    to: Annotated[str, typer.Option("--to", help="earliest, latest, epoch seconds, ISO time, or 0:120,1:98.")],
    follow: FollowOption = False,
    timeout: TimeoutOption = 3600.0,
    pushgateway: PushOption = None,
    actor: ActorOption = None,
    dry_run: DryRunOption = False,
    as_json: JsonOption = False,
    broker: BrokerOption = None,
) -> None:
    """Move GROUP's committed positions on TOPIC to --to, with its workers running or not.

    Running members are fenced: a settle of a batch they fetched before the
    reset is refused whole (no acks, outputs, inbox keys or dead letters
    apply) and they read on from the new position — at their next fetch on
    memory and SQLite, once they notice their leases are gone on Redis and
    NATS (see docs/replay.md). Kafka refuses while the group has live members:
    stop its workers first. Scheduled retries of the group on TOPIC are
    dropped; its inbox and dead letters are kept, so events it handled before
    are dropped as duplicates — replay into a new group to handle them again.
    """
    _move_group(
        group, topic, to, Follow(follow, timeout, pushgateway, actor), dry_run=dry_run, as_json=as_json, url=broker
    )


def group_command(
    group: Annotated[str, typer.Argument(help="A consumer group that never read TOPIC.")],
    topic: Annotated[str, typer.Argument(help="Topic to replay.")],
    start: Annotated[str, typer.Option("--from", help="earliest, latest, epoch seconds, ISO time, or 0:120,1:98.")],
    follow: FollowOption = False,
    timeout: TimeoutOption = 3600.0,
    pushgateway: PushOption = None,
    actor: ActorOption = None,
    dry_run: DryRunOption = False,
    as_json: JsonOption = False,
    broker: BrokerOption = None,
) -> None:
    """Start the new consumer group GROUP on TOPIC at --from; its handlers then replay from there.

    Refuses a group that has positions on TOPIC already (use ``replay reset``).
    The dry run prints what the group would read up to the log's end now.
    """
    _move_group(
        group,
        topic,
        start,
        Follow(follow, timeout, pushgateway, actor),
        dry_run=dry_run,
        as_json=as_json,
        url=broker,
        new=True,
    )


def _move_group(
    group: str, topic: str, to: str, follow: Follow, *, dry_run: bool, as_json: bool, url: str | None, new: bool = False
) -> None:
    with usage_errors():
        check_group(group), check_topic(topic)
        position = parse_position(to, "--from" if new else "--to")

    @run_async
    async def main() -> None:
        async with opened_broker(url) as target:
            admin = require(target, GroupAdmin, "reset consumer groups")
            existing = await admin.group_positions(topic, group)
            if new and existing:
                raise ConfigurationError(
                    f"group {group!r} has positions on {topic!r} already; use `choreograph replay reset` to move it"
                )
            bounds = await resolve(target, topic, position, None)
            if dry_run:
                found, speed = await _timed_plan(target, topic, bounds, Filter())
                resets = [PartitionReset(topic, group, p, existing.get(p), bounds.first[p]) for p in bounds.first]
                _show_plan(found, speed, None, as_json, group=group, resets=resets)
                return
            audit = AuditLog.of(target)  # refused before anything moves if the trail cannot be kept
            started = time.monotonic()
            moved = list(await admin.reset_group(topic, group, position))
            await audit.record(
                "replay" if new else "reset",
                target=f"group {group} on {topic}",
                count=await _records_put_back(target, topic, group, bounds),
                actor=follow.actor,
                details={"to": to, "partitions": {str(r.partition): [r.before, r.after] for r in moved}},
            )
            doc: dict[str, Any] = {
                "dry_run": False,
                "group": group,
                "topic": topic,
                "partitions": [{"partition": r.partition, "before": r.before, "after": r.after} for r in moved],
                "seconds": round(time.monotonic() - started, 3),
            }
            if follow.on:
                name = f"{group}-{topic}"
                async with ReplayProgress(name, group=group, as_json=as_json, pushgateway=follow.pushgateway) as shown:
                    doc["read"] = await follow_group(target, topic, group, bounds, shown, follow.timeout)
                doc["seconds"] = round(time.monotonic() - started, 3)
        if as_json:
            emit_json(doc)
            return
        table = Table("partition", "before", "after", title=f"Group {group} on {topic}")
        for r in moved:
            table.add_row(str(r.partition), "-" if r.before is None else str(r.before), str(r.after))
        out.print(table)
        plain(f"{'started' if new else 'reset'} {group} on {topic}: {len(moved)} partitions")

    main()


async def _records_put_back(broker: Broker, topic: str, group: str, bounds: Bounds) -> int:
    """How many records ``group`` has to read on ``topic`` right after its reset: its lag, for the audit trail.

    Offset spans would overcount where a backend's offsets are not dense per
    partition (NATS: stream sequences shared by the partitions); a backend
    without lag reports falls back to them.
    """
    if isinstance(broker, LagReporter):
        return sum(lag.end_offset - lag.committed for lag in await broker.lag(group) if lag.topic == topic)
    return sum(bounds.end[p] - bounds.first[p] for p in bounds.first)


def _show_plan(
    found: Plan,
    speed: float | None,
    rate: float | None,
    as_json: bool,
    *,
    group: str | None = None,
    resets: list[PartitionReset] | None = None,
    target: str | None = None,
) -> None:
    estimate = found.estimate(rate, speed)
    if as_json:
        extra: dict[str, Any] = {"dry_run": True}
        if group is not None:
            extra["group"] = group
        if target is not None:
            extra["target"] = target
        doc = _plan_doc(found, estimate, **extra)
        if resets is not None:
            before = {r.partition: r.before for r in resets}
            for part in doc["partitions"]:
                part["before"] = before.get(part["partition"])
        emit_json(doc)
        return
    title = f"Dry run: {'group ' + group if group else 'copy'} on {found.topic}" + (f" to {target}" if target else "")
    out.print(_plan_table(title, found, resets))
    plain(_estimate_line(found, estimate, rate) + "; nothing moved")


# -- copy -----------------------------------------------------------------------------


def copy(
    topic: Annotated[str, typer.Argument(help="Topic to copy from.")],
    to_topic: Annotated[str | None, typer.Option("--to-topic", help="Target topic (default: TOPIC).")] = None,
    to_broker: Annotated[
        str | None, typer.Option("--to-broker", metavar="URL", help="Target broker (default: the source broker).")
    ] = None,
    start: Annotated[
        str, typer.Option("--from", help="earliest, epoch seconds, ISO time, or 0:120,1:98.")
    ] = "earliest",
    until: Annotated[str | None, typer.Option("--until", help="Stop before records at or after this time.")] = None,
    offsets: Annotated[
        str | None, typer.Option("--offsets", help="Only these partitions and offsets: 0:10-20,1:5- (end exclusive).")
    ] = None,
    types: Annotated[list[str] | None, typer.Option("--type", help="Only events of this type (repeatable).")] = None,
    keys: Annotated[list[str] | None, typer.Option("--key", help="Only records with this key (repeatable).")] = None,
    correlation_id: Annotated[str | None, typer.Option("--correlation-id", help="Only this correlation.")] = None,
    rate: Annotated[float | None, typer.Option("--rate", help="Most events per second.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Replay name (checkpoint, metrics label).")] = None,
    restart: Annotated[bool, typer.Option("--restart", help="Ignore a checkpoint and start over.")] = False,
    checkpoint_dir: Annotated[
        Path | None, typer.Option("--checkpoint-dir", help="Where checkpoints go when the broker keeps no key-values.")
    ] = None,
    pushgateway: PushOption = None,
    actor: ActorOption = None,
    dry_run: DryRunOption = False,
    as_json: JsonOption = False,
    broker: BrokerOption = None,
) -> None:
    """Copy a range of TOPIC to --to-topic and/or --to-broker, keeping event ids and per-key order.

    The range is [--from, --until) or --offsets, resolved once at the start
    (records published meanwhile are not copied); filters take events of
    --type, records of --key, events of --correlation-id. At least once: a
    copy interrupted (Ctrl-C, a crash) resumes from its checkpoint when run
    again with the same arguments, and may publish its last batch twice, with
    the same ids, which downstream inboxes drop. The checkpoint lives with
    the source broker when it keeps key-value namespaces, else in
    --checkpoint-dir (default ~/.local/state/choreograph/replay); the report
    says which.
    """
    with usage_errors():
        target_topic = to_topic or topic
        check_topic(topic), check_topic(target_topic)
        check_rate(rate)
        if to_broker is None and target_topic == topic:
            raise _usage("copying TOPIC onto itself on the same broker: give --to-topic or --to-broker")
        position = parse_position(start, "--from")
        end_time = None if until is None else parse_time(until, "--until")
        ranges = parse_offset_ranges(offsets) if offsets else None
        accept = Filter(frozenset(types or ()), frozenset(keys or ()), correlation_id)
        request = {
            "broker": broker or os.environ.get("CHOREOGRAPH_BROKER", ""),
            "topic": topic,
            "to_broker": to_broker,
            "to_topic": target_topic,
            "from": start,
            "until": until,
            "offsets": offsets,
            "filter": accept.describe(),
        }
        fingerprint = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
        replay_name = check_replay_name(name) if name else f"{topic}-to-{target_topic}-{fingerprint[:10]}"[-MAX_NAME:]
        target_shown = f"{redact_url(to_broker) + ' ' if to_broker else ''}{target_topic}"

    @run_async
    async def main() -> None:
        async with opened_broker(broker) as source:
            if topic not in {info.name for info in await require(source, TopicAdmin, "list topics").topics()}:
                raise UnknownTopic(f"unknown topic {topic!r}")
            bounds = await resolve(source, topic, position, end_time)
            if ranges is not None:
                first, end = ranges
                bounds = with_end_offsets(
                    Bounds(
                        {p: max(o, first.get(p, o)) if p in first else bounds.end[p] for p, o in bounds.first.items()},
                        bounds.end,
                    ),
                    end,
                )
            found, speed = await _timed_plan(source, topic, bounds, accept)
            if dry_run:
                _show_plan(found, speed, rate, as_json, target=target_shown)
                return
            audit = AuditLog.of(source)  # refused before anything moves if the trail cannot be kept
            checkpoints = checkpoints_for(source, checkpoint_dir or _default_checkpoints())
            if restart:
                await checkpoints.clear(replay_name)
            job = CopyJob(replay_name, topic, target_topic, bounds, accept, rate, fingerprint)
            if to_broker is None:
                report = await _run_copy(source, source, job, found.total, checkpoints, as_json, pushgateway)
            else:
                sink = open_broker(to_broker)
                try:
                    report = await _run_copy(source, sink, job, found.total, checkpoints, as_json, pushgateway)
                finally:
                    await sink.close()
            await audit.record(
                "copy",
                target=f"{topic} to {target_shown}",
                count=report.copied,
                actor=actor,
                details={"name": replay_name, "from": start, "until": until, "offsets": offsets, **accept.describe()},
            )
        doc = {"dry_run": False, "planned": found.total, **report.to_doc(), "target": target_shown}
        if as_json:
            emit_json(doc)
            return
        resumed = " (resumed)" if report.resumed else ""
        plain(
            f"copied {report.copied} of {found.total} records{resumed} from {topic} to {target_shown} "
            f"in {report.seconds:.1f} s; {report.skipped} filtered out; checkpoints: {report.checkpoints}"
        )

    main()


def _usage(message: str) -> typer.Exit:
    return fail(message, EXIT_USAGE)


def _default_checkpoints() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "choreograph" / "replay"


async def _run_copy(
    source: Broker, sink: Broker, job: CopyJob, total: int, checkpoints: Checkpoints, as_json: bool, push: str | None
) -> CopyReport:
    async with ReplayProgress(job.name, as_json=as_json, pushgateway=push) as progress:
        return await copy_range(source, sink, job, total=total, checkpoints=checkpoints, progress=progress.tick)


async def follow_group(
    broker: Broker, topic: str, group: str, bounds: Bounds, progress: ReplayProgress, timeout: float
) -> int:
    """Poll ``group``'s positions until it passed ``bounds.end`` on every partition; return the records it read.

    Raises ReplayTimeout after ``timeout`` seconds (the group's workers may be stopped).
    """
    admin = require(broker, GroupAdmin, "read group positions")
    offsets = await record_offsets(broker, topic, bounds)
    total = sum(map(len, offsets.values()))
    deadline = time.monotonic() + timeout
    while True:
        done = records_before(offsets, await admin.group_positions(topic, group))
        progress.tick(done, total)
        if done >= total:
            return done
        if time.monotonic() > deadline:
            raise ReplayTimeout(
                f"group {group!r} read {done} of {total} records in {timeout:g} s; are its workers running?"
            )
        await asyncio.sleep(FOLLOW_INTERVAL)  # polling the committed positions: no event tells us they moved


def register(cli: typer.Typer) -> None:
    """Add the ``replay`` command group (reset, group, copy) to ``cli``."""
    replay_app.command("reset")(reset)
    replay_app.command("group")(group_command)
    replay_app.command("copy")(copy)
    replay_app.command("run")(run_command)
    cli.add_typer(replay_app, name="replay")
