"""Settings of the embedded SQLite broker and the ``sqlite:///`` URL form."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Final

from choreograph.core.errors import ConfigurationError
from choreograph.core.options import (
    MAX_MILLIS_SECONDS,
    MAX_PARTITIONS,
    require_lease,
    require_non_negative,
    require_positive,
    require_positive_int,
    split_url,
    sqlite_file_path,
)
from choreograph.core.retention import DEFAULT_RETENTION, check_retention, parse_retention
from choreograph.core.url_options import Url, parse_options, url_options

SYNC_MODES = ("normal", "full")


@dataclass(frozen=True, slots=True)
class SqliteConfig:
    """How the SQLite broker stores, leases and trims. Validated on construction.

    Durability (``sync``):

    * ``"normal"`` — ``PRAGMA synchronous=NORMAL`` in WAL mode. A publish is in
      the write-ahead log when it returns, and the WAL is fsynced at checkpoint:
      it survives a crash of the process, but the last commits may be lost on
      power loss or an OS crash.
    * ``"full"`` — ``PRAGMA synchronous=FULL``: the WAL is fsynced before a
      publish (or settle) returns. Survives power loss, costs one fsync per
      group commit (not per record: concurrent publishes share it).
    """

    partitions: int = 8
    """Partitions of a topic created by this broker (existing topics keep theirs)."""
    sync: Annotated[str, Url(normalize=str.lower)] = "normal"
    """``"normal"`` or ``"full"``; see the class docstring."""
    lease_timeout: float = 10.0
    """Seconds a member keeps its partitions without heartbeating; then survivors take them."""
    heartbeat_interval: float | None = None
    """Seconds between heartbeats; ``None`` means ``lease_timeout / 3``."""
    rebalance_check_interval: float = 0.1
    """Seconds between cheap checks for members joining or leaving (triggers an early heartbeat)."""
    inbox_retention: float = 7 * 24 * 3600.0
    """Seconds a dedupe key stays in a group's inbox."""
    retention: Annotated[float | None, Url(parse=parse_retention)] = DEFAULT_RETENTION
    """Trim records older than this many seconds (default 7 days; ``None`` or ``0``: keep forever).
    Records a group has not committed stay (see ``retention_respect_groups``)."""
    retention_max_age: Annotated[float | None, Url(refuse="it is the deprecated spelling of retention")] = None
    """Deprecated alias of ``retention``: when given, it is the retention."""
    retention_max_records: int | None = None
    """Keep at most this many records per partition (``None``: no limit)."""
    retention_respect_groups: bool = True
    """Never trim records a consumer group has not committed yet."""
    retention_interval: float = 60.0
    """Seconds between background trims of records and inbox keys."""
    busy_timeout: float = 5.0
    """Seconds to wait for another process's write lock before failing."""
    max_batch_records: int = 20_000
    """Upper bound of records group-committed in one write transaction."""
    dead_letter_retention: float | None = None
    """Seconds a dead letter is kept after it was stored, whatever its status; then the background
    trim deletes it (``None``: until ``choreograph dlq purge --delete``)."""

    def __post_init__(self) -> None:
        require_positive_int("partitions", self.partitions, at_most=MAX_PARTITIONS)
        if self.sync not in SYNC_MODES:
            raise ConfigurationError(f"sync must be one of {SYNC_MODES}, got {self.sync!r}")
        require_lease(self.lease_timeout, self.heartbeat_interval)
        require_positive("rebalance_check_interval", self.rebalance_check_interval)
        require_positive("inbox_retention", self.inbox_retention)
        if self.retention_max_age is not None:
            require_positive("retention_max_age", self.retention_max_age)
            object.__setattr__(self, "retention", self.retention_max_age)  # frozen: set once, here
        object.__setattr__(self, "retention", check_retention("retention", self.retention))
        if self.retention_max_records is not None:
            require_positive_int("retention_max_records", self.retention_max_records)
        require_positive("retention_interval", self.retention_interval)
        require_non_negative("busy_timeout", self.busy_timeout, at_most=MAX_MILLIS_SECONDS)  # SQLite takes int ms
        require_positive_int("max_batch_records", self.max_batch_records)
        if self.dead_letter_retention is not None:
            require_positive("dead_letter_retention", self.dead_letter_retention)

    @property
    def effective_heartbeat_interval(self) -> float:
        """Seconds between heartbeats actually used."""
        if self.heartbeat_interval is not None:
            return self.heartbeat_interval
        return self.lease_timeout / 3


_OPTIONS: Final = url_options(SqliteConfig, "sqlite", (("retention_max_age", "retention"),))
"""The URL options: every field, read by its type (see :mod:`choreograph.core.url_options`)."""
_PARSERS: Final = {**_OPTIONS.readers, **{old: _OPTIONS.readers[new] for old, new in _OPTIONS.aliases.items()}}
"""Every option name a URL accepts (deprecated aliases included), with its reader."""


def parse_url(url: str) -> tuple[str, SqliteConfig]:
    """Split ``sqlite:///path.db?option=value&...`` into a file path and a config.

    ``sqlite:///./x.db`` is relative to the working directory and
    ``sqlite:////abs/x.db`` is absolute. Unknown options are rejected by name.
    """
    path = sqlite_file_path(url)
    parts = split_url(url, "sqlite")
    return path, SqliteConfig(**parse_options(_OPTIONS, parts.query))
