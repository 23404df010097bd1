"""The SQLite broker's :class:`~choreograph.core.local_log.LocalLogBackend` capability: its log is one file."""

from __future__ import annotations

from choreograph.core.local_log import BackupSummary, Progress

from .backup import backup, restore
from .config import parse_url


class LocalLogFile:
    """Mixin of :class:`~choreograph.brokers.sqlite.SqliteBroker`: the file of a URL, its backup and restore."""

    @classmethod
    def log_path(cls, url: str) -> str:
        """The file of ``sqlite:///path.db`` (ConfigurationError for a URL without a file path)."""
        return parse_url(url)[0]

    @classmethod
    def backup_log(
        cls, url: str, target: str, *, progress: Progress | None = None, overwrite: bool = False
    ) -> BackupSummary:
        """Back up the log file (see :func:`choreograph.brokers.sqlite.backup.backup`)."""
        return backup(parse_url(url)[0], target, progress=progress, overwrite=overwrite)

    @classmethod
    def restore_log(
        cls, url: str, source: str, *, progress: Progress | None = None, force: bool = False
    ) -> BackupSummary:
        """Restore the log file (:func:`choreograph.brokers.sqlite.backup.restore`) with the URL's lease timeout."""
        path, config = parse_url(url)
        return restore(source, path, force=force, lease_timeout=config.lease_timeout, progress=progress)
