"""``choreograph tail``, ``topics`` and ``lag``: read the log and its positions without moving any offset.

Every field read from the broker is untrusted: tables show it through
:func:`~choreograph.ops.terminal.cell`, and ``--json`` prints one JSON document
per line (records' values as the JSON they hold, or base64 when they hold none).
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, TypeVar

import orjson
import typer
from rich.table import Table
from rich.text import Text

from choreograph.core import codec
from choreograph.core.broker import Broker, Delivery, LagReporter, LogReader, Position, TopicAdmin
from choreograph.core.enums import StartKind
from choreograph.core.errors import ConfigurationError, DecodeError, UnknownTopic
from choreograph.core.retention import PositionResolver
from choreograph.observe.lag_age import lag_seconds
from choreograph.ops.session import opened_broker
from choreograph.ops.terminal import BrokerOption, cell, emit_json, fmt_time, one_line, out, plain, run_async

T = TypeVar("T")

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document per line (for scripts).")]


def require(broker: Broker, protocol: type[T], what: str) -> T:
    """Return ``broker`` as ``protocol``, or raise ConfigurationError saying it cannot do ``what``."""
    if not isinstance(broker, protocol):
        raise ConfigurationError(f"this broker ({type(broker).__name__}) cannot {what}")
    return broker


async def _known_topic(broker: Broker, topic: str) -> None:
    admin = require(broker, TopicAdmin, "list topics")
    names = [info.name for info in await admin.topics()]
    if topic not in names:
        hint = f"; known topics: {', '.join(names)}" if names else "; the log has no topics yet"
        raise UnknownTopic(f"unknown topic {topic!r}{hint}")


def parse_start(start: str) -> Position:
    """Parse ``--from``: earliest, latest, epoch seconds or an ISO time."""
    if start == StartKind.EARLIEST:
        return Position.earliest()
    if start == StartKind.LATEST:
        return Position.at_time(time.time())
    try:
        return Position.at_time(float(start))
    except ValueError:
        pass
    try:
        return Position.at_time(datetime.fromisoformat(start).timestamp())
    except ValueError:
        raise ConfigurationError(
            f"--from {start!r}: use earliest, latest, epoch seconds or an ISO time like 2026-11-26T10:00:00"
        ) from None


def _line(delivery: Delivery) -> Text:
    """One record as a line of plain text: every field from the log is shown as text, on this line."""
    head = Text(f"{fmt_time(delivery.timestamp)} p{delivery.partition}@{delivery.offset} ")
    try:
        env = codec.decode(delivery.value)
    except DecodeError as exc:
        return head + Text("undecodable", style="red") + cell(f" key={delivery.key} {str(exc)[:60]}")
    data = orjson.dumps(env.data).decode()[:80]
    return (
        head + cell(env.type, "cyan") + cell(f" key={delivery.key} id={env.id} corr={env.correlationid or '-'} {data}")
    )


def record_doc(delivery: Delivery) -> dict[str, Any]:
    """Return a record as a JSON-ready dict: its value as the JSON it holds, else as base64."""
    doc: dict[str, Any] = {
        "topic": delivery.topic,
        "partition": delivery.partition,
        "offset": delivery.offset,
        "timestamp": delivery.timestamp,
        "key": delivery.key,
        "headers": dict(delivery.headers),
    }
    try:
        doc["value"] = orjson.loads(delivery.value)
    except orjson.JSONDecodeError:
        doc["value_base64"] = base64.b64encode(delivery.value).decode("ascii")
    return doc


PAGE = 1000
"""Records asked of the broker per read."""


async def start_offsets(target: Broker, topic: str, position: Position) -> tuple[dict[int, int], float | None]:
    """Resolve ``position`` to a first offset per partition, and a time before which records are dropped.

    A broker that resolves positions (:class:`PositionResolver`) answers
    exactly. Another one is read from each partition's oldest record (an
    ``at_offsets`` position naming no partition), and records stamped before
    the start time are dropped here: slower, never wrong.
    """
    if isinstance(target, PositionResolver):
        return await target.resolve_position(topic, position), None
    return {}, (position.time if position.kind == StartKind.TIME else None)


async def read_all(
    reader: LogReader, topic: str, offsets: dict[int, int], since: float | None, limit: int
) -> AsyncIterator[list[Delivery]]:
    """Yield pages of ``topic`` from ``offsets`` until every partition's end (or ``limit`` records; 0: all).

    Reads by offset per partition, so no record is skipped or repeated,
    whatever the records' times. ``offsets`` is advanced in place past every
    record read, so a caller can read on from where this stopped.
    """
    taken = 0
    while not limit or taken < limit:
        want = min(PAGE, limit - taken) if limit else PAGE
        batch = await reader.read(topic, Position.at_offsets(offsets), limit=want)
        if not batch:  # every partition is at its end
            return
        for delivery in batch:
            offsets[delivery.partition] = max(offsets.get(delivery.partition, 0), delivery.offset + 1)
        shown = [d for d in batch if since is None or d.timestamp >= since]
        taken += len(shown)
        if shown:
            yield shown


def tail(
    topic: Annotated[str, typer.Argument(help="Topic to read.")],
    start: Annotated[str, typer.Option("--from", help="earliest, latest, epoch seconds or ISO time.")] = "earliest",
    limit: Annotated[int, typer.Option(help="Most records to print (0: all of them).")] = 50,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new records.")] = False,
    merge_time: Annotated[
        bool,
        typer.Option(
            "--merge-time", help="Print in time order across partitions (reads to the end first, then sorts)."
        ),
    ] = False,
    raw: Annotated[
        bool, typer.Option(help="Print each record's value (its JSON) as is, one per line, never wrapped.")
    ] = False,
    as_json: JsonOption = False,
    broker: BrokerOption = None,
) -> None:
    """Print records of TOPIC without joining a consumer group (does not move any offset).

    Reads each partition by offset, from ``--from`` to its end, so no record
    is skipped: partition after partition, each in offset order, or in time
    order across partitions with ``--merge-time`` (which reads the whole range
    first; with ``--follow``, each later page is sorted on its own).
    ``--limit 0`` prints every record. ``--json`` prints one JSON document per
    record and line: topic, partition, offset, timestamp, key, headers and
    ``value`` (the record's JSON) or ``value_base64`` (a value that is not JSON).
    """

    def show(delivery: Delivery) -> None:
        if as_json:
            emit_json(record_doc(delivery))
        elif raw:
            plain(one_line(delivery.value.decode(errors="replace")))
        else:
            out.print(_line(delivery), soft_wrap=True)

    @run_async
    async def main() -> None:
        async with opened_broker(broker) as target:
            await _known_topic(target, topic)
            reader = require(target, LogReader, "read topics")
            position = parse_start(start)
            if start == StartKind.LATEST and isinstance(target, PositionResolver):
                position = Position.latest()
            offsets, since = await start_offsets(target, topic, position)
            printed = 0
            while True:
                left = limit - printed if limit else 0
                shown = 0
                if merge_time:
                    records = [d async for page in read_all(reader, topic, offsets, since, 0) for d in page]
                    records.sort(key=lambda d: (d.timestamp, d.partition, d.offset))
                    for delivery in records[:left] if limit else records:
                        show(delivery)
                        shown += 1
                else:
                    async for page in read_all(reader, topic, offsets, since, left):
                        for delivery in page:
                            show(delivery)
                        shown += len(page)
                printed += shown
                if (limit and printed >= limit) or not follow:
                    break
                if not shown:
                    await asyncio.sleep(0.2)  # poll interval of an interactive tail

    main()


def topics(as_json: JsonOption = False, broker: BrokerOption = None) -> None:
    """List topics with partitions and record counts (``--json``: one document per topic)."""

    @run_async
    async def main() -> None:
        async with opened_broker(broker) as target:
            infos = await require(target, TopicAdmin, "list topics").topics()
        if as_json:
            for info in infos:
                emit_json(
                    {
                        "topic": info.name,
                        "partitions": info.partitions,
                        "records": info.records,
                        "end_offset": info.end_offset,
                    }
                )
            return
        table = Table("topic", "partitions", "records", "end offset", title="Topics")
        for info in infos:
            table.add_row(cell(info.name), str(info.partitions), str(info.records), str(info.end_offset))
        out.print(table)

    main()


def lag(
    group: Annotated[str | None, typer.Option(help="Only this consumer group.")] = None,
    per_partition: Annotated[bool, typer.Option("--partitions", help="One row per partition.")] = False,
    as_json: JsonOption = False,
    broker: BrokerOption = None,
) -> None:
    """Show consumer lag (published minus committed) per group and topic (``--json``: one document per row).

    ``oldest`` (``lag_seconds`` in JSON) is the age of the oldest record the
    group has not handled, read from the log at its committed position (on
    NATS: after the consumer's ack floor); exact on every backend.
    """

    @run_async
    async def main() -> None:
        async with opened_broker(broker) as target:
            rows = await require(target, LagReporter, "report lag").lag(group)
            ages = await lag_seconds(target, rows, time.time()) if isinstance(target, LogReader) else {}
        if group and not rows:
            raise UnknownTopic(f"no consumer group {group!r} has committed anything")
        if per_partition:
            lines = [
                {
                    "group": row.group,
                    "topic": row.topic,
                    "partition": row.partition,
                    "end": row.end_offset,
                    "committed": row.committed,
                    "lag": row.lag,
                    "lag_seconds": ages.get((row.group, row.topic, row.partition)),
                }
                for row in rows
            ]
        else:
            totals: dict[tuple[str, str], list[int]] = {}
            for row in rows:
                acc = totals.setdefault((row.group, row.topic), [0, 0, 0])
                acc[0] += row.end_offset
                acc[1] += row.committed
                acc[2] += row.lag
            oldest: dict[tuple[str, str], float] = {}
            for (g, t, _), age in ages.items():
                oldest[(g, t)] = max(age, oldest.get((g, t), 0.0))
            lines = [
                {
                    "group": g,
                    "topic": t,
                    "end": end,
                    "committed": committed,
                    "lag": lagged,
                    "lag_seconds": oldest.get((g, t)),
                }
                for (g, t), (end, committed, lagged) in sorted(totals.items())
            ]
        if as_json:
            for line in lines:
                emit_json(line)
            return
        table = Table("group", "topic", *(["partition"] if per_partition else []), "end", "committed", "lag", "oldest")
        for line in lines:
            lagged = line["lag"]
            table.add_row(
                cell(line["group"]),
                cell(line["topic"]),
                *([str(line["partition"])] if per_partition else []),
                str(line["end"]),
                str(line["committed"]),
                Text(str(lagged), style="red") if lagged and not per_partition else str(lagged),
                "-" if line["lag_seconds"] is None else f"{line['lag_seconds']:.1f}s",
            )
        out.print(table)

    main()


def register(cli: typer.Typer) -> None:
    """Add ``tail``, ``topics`` and ``lag`` to ``cli``."""
    cli.command("tail")(tail)
    cli.command("topics")(topics)
    cli.command("lag")(lag)
