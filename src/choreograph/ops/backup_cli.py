"""``choreograph backup`` and ``restore``: copy the SQLite log while workers run, and put a copy back.

Only a log kept in one local file is backed up by choreograph itself: the
backend says so through the :class:`~choreograph.core.local_log.LocalLogBackend`
capability (the embedded SQLite log, with SQLite's online backup API; see
:mod:`choreograph.brokers.sqlite.backup`). NATS, Redis and Kafka keep the log
on their servers, whose own tools back it up: the commands say so and point
to ``docs/operations.md``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Final

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from choreograph.brokers import broker_class, resolve_url
from choreograph.core.errors import ConfigurationError
from choreograph.core.local_log import BackupSummary, LocalLogBackend
from choreograph.core.redaction import redact_url
from choreograph.ops.terminal import BrokerOption, err, out, run_async, safe

NATIVE_TOOLS: Final = {  # by backend package (choreograph.brokers.<name>), only to name the tools in the refusal
    "nats": "JetStream stream snapshots (`nats stream backup` / `nats stream restore`)",
    "redis": "Redis persistence (RDB snapshots, AOF) and replicas",
    "kafka": "Kafka replication (replication factor, min.insync.replicas) and MirrorMaker 2",
    "memory": "nothing: memory:// keeps no log to back up",
}


def local_log(url: str | None) -> tuple[LocalLogBackend, str]:
    """Return the backend class and resolved URL of a broker whose log is one local file (SQLite).

    Raises ConfigurationError naming the backend's own tools for any other backend.
    """
    resolved = resolve_url(url)
    backend = broker_class(resolved)
    if not isinstance(backend, LocalLogBackend):
        parts = backend.__module__.split(".")  # choreograph.brokers.<name>[.module]
        tools = NATIVE_TOOLS.get(parts[2] if len(parts) > 2 else "", "the backend's own tools")
        raise ConfigurationError(
            f"choreograph backs up only a log kept in one local file (SQLite); {redact_url(resolved)} keeps its "
            f"log elsewhere.\nUse {tools}: see docs/operations.md (backup and recovery)."
        )
    return backend, resolved


@contextmanager
def _progress_bar(label: str) -> Iterator[Callable[[int, int], None]]:
    """Yield a progress callback (pages copied, pages in all) drawing a bar on a terminal's stderr."""
    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("pages"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as bar:
        task = bar.add_task(label, total=None)

        def advance(copied: int, total: int) -> None:
            bar.update(task, completed=copied, total=total)

        yield advance


def _describe(summary: BackupSummary) -> str:
    return (
        f"{summary.size / 1e6:.1f} MB, {summary.records} records, {summary.committed_groups} committed groups,"
        f" {summary.inbox_keys} inbox keys, {summary.dead_letters} dead letters"
    )


def backup(
    target: Annotated[Path, typer.Argument(metavar="OUT", help="File to write the backup to (must not exist).")],
    broker: BrokerOption = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUT if it exists.")] = False,
) -> None:
    """Back up the SQLite log to OUT: one consistent snapshot, taken while workers keep running.

    What was published, settled or recorded in the inbox before the backup
    started is in it. Other backends are backed up with their own tools
    (docs/operations.md).
    """

    @run_async
    async def main() -> None:
        backend, url = local_log(broker)
        path = backend.log_path(url)
        with _progress_bar("backing up") as progress:
            summary = await asyncio.to_thread(backend.backup_log, url, str(target), progress=progress, overwrite=force)
        out.print(f"backed up {safe(path)} to {safe(target)}: {_describe(summary)}")

    main()


def restore(
    source: Annotated[Path, typer.Argument(metavar="BACKUP", help="A file written by choreograph backup.")],
    broker: BrokerOption = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the log file if it exists.")] = False,
) -> None:
    """Restore the SQLite log from BACKUP. Stop every worker first.

    Refuses while consumers heartbeat in the log file (workers are using it)
    and, without --force, if the file exists. Workers started afterwards
    resume from the backup's offsets: events handled after the backup was
    taken are delivered again, events in the backup's inbox are still dropped.
    """

    @run_async
    async def main() -> None:
        backend, url = local_log(broker)
        path = backend.log_path(url)
        with _progress_bar("restoring") as progress:
            summary = await asyncio.to_thread(backend.restore_log, url, str(source), progress=progress, force=force)
        out.print(f"restored {safe(source)} to {safe(path)}: {_describe(summary)}")

    main()


def register(cli: typer.Typer) -> None:
    """Add ``backup`` and ``restore`` to ``cli``."""
    cli.command("backup")(backup)
    cli.command("restore")(restore)
