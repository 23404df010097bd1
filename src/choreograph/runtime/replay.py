"""Copy a bounded range of a topic to another topic or broker, paced, resumable, with progress.

:func:`copy_range` reads each partition of the range in offset order and
publishes the records it takes — value, key and headers unchanged, so event
ids stay the same and a downstream inbox drops what it already handled — to
the target topic, one partition after the other. Records of one key live in
one source partition and are published in their order, so per-key order holds
on the target whatever its partition count.

Delivery is at least once: after each published batch the position reached
is stored as a checkpoint (:class:`Checkpoints`); a copy interrupted between
a publish and its checkpoint publishes that batch again when resumed, with
the same ids. A finished copy clears its checkpoint.

Checkpoints live with the broker when it offers key-value namespaces
(:class:`~choreograph.core.kv.KeyValueProvider`: namespace ``replay``, one key
per replay name), else in a local directory (one JSON file per name).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from choreograph.core.broker import Broker, LogReader, Record
from choreograph.core.errors import ConfigurationError
from choreograph.core.kv import KeyValueProvider, KeyValueStore
from choreograph.runtime.replay_range import Bounds, Filter, read_range

CHECKPOINT_NAMESPACE = "replay"
BATCH = 100
"""Records per publish (fewer under a low ``rate``, so pacing stays smooth)."""

Progress = Callable[[int, int], None]
"""Called with (records done, records in all) after every batch."""


class Checkpoints(Protocol):
    """Where a replay stores how far it got."""

    where: str
    """Says where, for the command's report (``broker key-value namespace replay``, a directory)."""

    async def load(self, name: str) -> dict[str, Any] | None:
        """Return the checkpoint of replay ``name``, or None."""
        ...

    async def save(self, name: str, doc: dict[str, Any]) -> None:
        """Store the checkpoint of replay ``name`` (replacing the last one)."""
        ...

    async def clear(self, name: str) -> None:
        """Forget replay ``name``'s checkpoint. Idempotent."""
        ...


class KeyValueCheckpoints:
    """Checkpoints in the broker's key-value namespace ``replay``: shared by every machine using the broker."""

    def __init__(self, store: KeyValueStore) -> None:
        self._store = store
        self.where = f"broker key-value namespace {CHECKPOINT_NAMESPACE!r}"

    async def load(self, name: str) -> dict[str, Any] | None:
        """Return the stored checkpoint, or None."""
        entry = await self._store.get(name)
        return None if entry is None else _parse(name, entry.value)

    async def save(self, name: str, doc: dict[str, Any]) -> None:
        """Write the checkpoint (unconditionally: one replay of a name runs at a time)."""
        await self._store.put(name, json.dumps(doc).encode())

    async def clear(self, name: str) -> None:
        """Delete the checkpoint."""
        await self._store.delete(name)


class FileCheckpoints:
    """Checkpoints as JSON files in a local directory (written to a temporary file, then renamed)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.where = f"local directory {self.directory}"

    def _path(self, name: str) -> Path:
        return self.directory / f"{name}.json"

    async def load(self, name: str) -> dict[str, Any] | None:
        """Return the stored checkpoint, or None."""
        try:
            raw = self._path(name).read_bytes()
        except FileNotFoundError:
            return None
        return _parse(name, raw)

    async def save(self, name: str, doc: dict[str, Any]) -> None:
        """Write the checkpoint atomically (a crash leaves the old one or the new one)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = self._path(name).with_suffix(".tmp")
        temporary.write_text(json.dumps(doc))
        os.replace(temporary, self._path(name))

    async def clear(self, name: str) -> None:
        """Delete the checkpoint file."""
        self._path(name).unlink(missing_ok=True)


def _unreadable(name: str) -> ConfigurationError:
    return ConfigurationError(f"the checkpoint of replay {name!r} cannot be read; start over with --restart")


def _parse(name: str, raw: bytes) -> dict[str, Any]:
    """A stored checkpoint as a dict; ConfigurationError (naming ``--restart``) if it is not a JSON object."""
    try:
        doc = json.loads(raw)
    except ValueError:
        raise _unreadable(name) from None
    if not isinstance(doc, dict):
        raise _unreadable(name)
    return doc


def checkpoints_for(broker: Broker, directory: str | os.PathLike[str]) -> Checkpoints:
    """Checkpoints with the broker if it keeps key-value namespaces, else in ``directory``."""
    if isinstance(broker, KeyValueProvider):
        return KeyValueCheckpoints(broker.key_value(CHECKPOINT_NAMESPACE))
    return FileCheckpoints(directory)


@dataclass(frozen=True, slots=True)
class CopyJob:
    """One copy: from ``topic`` within ``bounds``, the records ``accept`` takes, to ``target_topic``."""

    name: str
    topic: str
    target_topic: str
    bounds: Bounds
    accept: Filter = field(default_factory=Filter)
    rate: float | None = None
    """Most records per second (None: as fast as the brokers go)."""
    fingerprint: str = ""
    """Identifies the request; a checkpoint of another request under the same name is not resumed."""
    batch: int = BATCH
    """Most records per publish and per checkpoint (fewer under a low ``rate``)."""


@dataclass(slots=True)
class CopyReport:
    """What a copy did."""

    name: str
    copied: int = 0
    """Records published to the target (by this run and, when resumed, the runs before it)."""
    skipped: int = 0
    """Records of the range the filter left out (this run)."""
    seconds: float = 0.0
    resumed: bool = False
    per_partition: dict[int, int] = field(default_factory=dict)
    checkpoints: str = ""

    def to_doc(self) -> dict[str, object]:
        """Return the report as a JSON-ready dict."""
        return {
            "name": self.name,
            "copied": self.copied,
            "skipped": self.skipped,
            "seconds": round(self.seconds, 3),
            "resumed": self.resumed,
            "per_partition": {str(p): n for p, n in sorted(self.per_partition.items())},
            "checkpoints": self.checkpoints,
        }


class Pacer:
    """Keeps a copy at or under ``rate`` records per second (sleeps on the event loop; None: never)."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self._started = time.monotonic()
        self._sent = 0

    async def take(self, count: int) -> None:
        """Wait until ``count`` more records fit the rate, then count them."""
        self._sent += count
        if self.rate:
            ahead = self._sent / self.rate - (time.monotonic() - self._started)
            if ahead > 0:
                await asyncio.sleep(ahead)


async def copy_range(
    source: Broker,
    target: Broker,
    job: CopyJob,
    *,
    total: int,
    checkpoints: Checkpoints,
    progress: Progress | None = None,
) -> CopyReport:
    """Copy ``job``'s range to its target (see the module); resume from a checkpoint of the same request.

    ``total`` is what the plan counted (for progress). Raises ConfigurationError
    for a copy of a topic onto itself on the same broker.
    """
    if source is target and job.topic == job.target_topic:
        raise ConfigurationError(f"a replay cannot copy {job.topic!r} onto itself; name another topic or broker")
    if not isinstance(source, LogReader):
        raise ConfigurationError(f"this broker ({type(source).__name__}) cannot read its log; replay needs LogReader")
    report = CopyReport(job.name, checkpoints=checkpoints.where)
    bounds, cursors = job.bounds, dict(job.bounds.first)
    saved = await checkpoints.load(job.name)
    if saved is not None and saved.get("fingerprint") == job.fingerprint:
        try:
            bounds = Bounds.from_doc(saved["bounds"])
            cursors = {int(p): int(o) for p, o in saved["next"].items()}
            report.copied = int(saved.get("copied", 0))
            report.per_partition = {int(p): int(n) for p, n in saved.get("per_partition", {}).items()}
        except (KeyError, TypeError, ValueError, AttributeError):
            raise _unreadable(job.name) from None
        report.resumed = True
    started = time.monotonic()
    pacer = Pacer(job.rate)
    size = max(1, job.batch if not job.rate else min(job.batch, int(job.rate / 10) or 1))
    count = len(bounds.first)

    async def flush(batch: list[Record], partition: int, next_offset: int) -> None:
        if batch:
            await pacer.take(len(batch))
            await target.publish(job.target_topic, batch)
            report.copied += len(batch)
            report.per_partition[partition] = report.per_partition.get(partition, 0) + len(batch)
        cursors[partition] = next_offset
        await checkpoints.save(job.name, _checkpoint(job, bounds, cursors, report))
        if progress is not None:
            progress(report.copied, total)

    for p in sorted(bounds.first):
        batch: list[Record] = []
        async for page in read_range(source, job.topic, p, cursors.get(p, bounds.first[p]), bounds.end[p], count):
            for delivery in page:
                if job.accept.accepts(delivery):
                    batch.append(Record(delivery.value, delivery.key, dict(delivery.headers)))
                else:
                    report.skipped += 1
                if len(batch) >= size:
                    await flush(batch, p, delivery.offset + 1)
                    batch = []
            if page:
                await flush(batch, p, page[-1].offset + 1)
                batch = []
        cursors[p] = bounds.end[p]
    await checkpoints.clear(job.name)
    report.seconds = time.monotonic() - started
    return report


def _checkpoint(job: CopyJob, bounds: Bounds, cursors: Mapping[int, int], report: CopyReport) -> dict[str, Any]:
    return {
        "fingerprint": job.fingerprint,
        "topic": job.topic,
        "target_topic": job.target_topic,
        "bounds": bounds.to_doc(),
        "next": {str(p): o for p, o in cursors.items()},
        "copied": report.copied,
        "per_partition": {str(p): n for p, n in report.per_partition.items()},
        "saved_at": time.time(),
    }
