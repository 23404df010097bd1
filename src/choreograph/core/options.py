"""Checking broker options: the range checks configs run, splitting a broker URL, the constructor's config.

Every backend takes its settings as a frozen config dataclass and accepts the
same settings as ``?name=value`` in its URL (read by the field types:
:mod:`choreograph.core.url_options`). These helpers make the errors uniform:
they name the option, the bad value, and what is accepted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from typing import Any, Final, TypeVar
from urllib.parse import SplitResult, unquote, urlsplit

from choreograph.core.errors import ConfigurationError

C = TypeVar("C")


MAX_SECONDS: Final = 10.0**9
"""Longest duration any option accepts (about 31 years): beyond it, conversions to the
backends' integer milliseconds or nanoseconds overflow."""

MAX_PARTITIONS: Final = 10_000
"""Most partitions a broker creates for a topic (each costs a stream, a subject or rows per group)."""

MAX_MILLIS_SECONDS: Final = (2**31 - 1) / 1000
"""Longest duration an option passed on as a 32-bit count of milliseconds accepts (about 24.8 days)."""


def _seconds(name: str, value: object, at_most: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{name} must be a number of seconds, got {value!r}")
    if isinstance(value, float) and math.isnan(value):
        raise ConfigurationError(f"{name} must be a number of seconds, got nan")
    if value > at_most:  # also inf, and ints too large for a float
        raise ConfigurationError(f"{name} must be at most {at_most:g} seconds, got {value!r}")
    return float(value)


def require_positive(name: str, value: object, *, at_most: float = MAX_SECONDS) -> None:
    """Raise ConfigurationError unless ``value`` is a number of seconds > 0 and <= ``at_most``.

    Refuses bools, non-numbers, nan, infinities and (by default) anything past
    :data:`MAX_SECONDS`, so no later conversion to a backend's integer units overflows.
    """
    if not _seconds(name, value, at_most) > 0:
        raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")


def require_non_negative(name: str, value: object, *, at_most: float = MAX_SECONDS) -> None:
    """Raise ConfigurationError unless ``value`` is a number of seconds >= 0 and <= ``at_most``."""
    if _seconds(name, value, at_most) < 0:
        raise ConfigurationError(f"{name} must be >= 0 seconds, got {value!r}")


def require_positive_int(name: str, value: object, *, at_most: int | None = None) -> None:
    """Raise ConfigurationError unless ``value`` is an integer >= 1 (and <= ``at_most`` if given)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")
    if at_most is not None and value > at_most:
        raise ConfigurationError(f"{name} must be at most {at_most}, got {value!r}")


def require_lease(lease_timeout: float, heartbeat_interval: float | None) -> None:
    """Raise ConfigurationError unless the lease is positive and heartbeats (if set) come more often."""
    require_positive("lease_timeout", lease_timeout)
    if heartbeat_interval is not None:
        require_positive("heartbeat_interval", heartbeat_interval)
        if heartbeat_interval >= lease_timeout:
            raise ConfigurationError(
                f"heartbeat_interval ({heartbeat_interval}) must be shorter than "
                f"lease_timeout ({lease_timeout}), or leases expire between heartbeats"
            )


def split_url(url: str, backend: str) -> SplitResult:
    """Split a broker URL; raise ConfigurationError (never ValueError) if it cannot be split."""
    if not isinstance(url, str):
        raise ConfigurationError(f"a {backend} broker URL must be a string, got {type(url).__name__}")
    try:
        return urlsplit(url)
    except ValueError as exc:  # e.g. an unclosed "[" of an IPv6 host
        raise ConfigurationError(f"malformed {backend} broker URL: {exc}") from None


def create_private_file(path: str) -> None:
    """Create ``path`` empty with mode 0600 if it does not exist; leave an existing file alone.

    For SQLite files (broker log, schema registry, observer state): records
    and dead letters may hold personal data, so no other user of the machine
    may read them, whatever the process umask; SQLite gives the ``-wal`` and
    ``-shm`` files it creates the database file's mode. Errors (a missing
    directory, no permission) are left for SQLite's own open to report.
    """
    with contextlib.suppress(OSError):  # FileExistsError included: another process won the race
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def sqlite_file_path(url: str) -> str:
    """Return the file path of a ``sqlite:///path.db`` URL (its query options are not checked here).

    ``sqlite:///./x.db`` is relative to the working directory and
    ``sqlite:////abs/x.db`` is absolute. Raises ConfigurationError for another
    scheme, a host, or no path (an in-memory database cannot be shared).
    """
    parts = split_url(url, "sqlite")
    if parts.scheme != "sqlite":
        raise ConfigurationError(f"not a sqlite URL (expected sqlite:///path.db): {url!r}")
    if parts.netloc:
        raise ConfigurationError(
            f"sqlite URL has a host {parts.netloc!r}; write sqlite:///relative.db or sqlite:////abs.db"
        )
    try:
        path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path, errors="strict")
    except UnicodeDecodeError:
        raise ConfigurationError(f"the path of the sqlite URL is not valid percent-encoded UTF-8: {url!r}") from None
    if "\x00" in path:
        raise ConfigurationError(f"the path of the sqlite URL contains a NUL character: {url!r}")
    if not path or path == ":memory:":
        raise ConfigurationError(f"sqlite URL needs a file path (in-memory is not shared): {url!r}")
    return path


def settings(
    config_type: type[C], given: object, legacy: dict[str, Any], location: str, location_type: type | tuple[type, ...]
) -> C:
    """The config a broker's ``__init__(config=None, /, *, clock=None, client=None, **legacy)`` was given.

    ``given`` is a ``config_type``, None (the defaults), or — the older
    constructor, ``XBroker(location, config=...)`` — the location (a URL or
    servers, of ``location_type``), which replaces the config's field
    ``location``. ``legacy`` holds the keywords the older form took (only
    ``config``); anything else is a TypeError, as for any unknown keyword.
    """
    config = legacy.pop("config", None)
    if legacy:
        raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(legacy))}")
    if config is not None and not isinstance(config, config_type):
        raise TypeError(f"config must be a {config_type.__name__}, got {type(config).__name__}")
    if given is None or isinstance(given, config_type):
        if given is not None and config is not None:
            raise TypeError("the config is given twice")
        return given if given is not None else (config or config_type())
    if not isinstance(given, location_type):
        raise TypeError(f"config must be a {config_type.__name__}, got {type(given).__name__}")
    value = given if isinstance(given, str) else tuple(given)  # type: ignore[arg-type]
    return dataclasses.replace(config or config_type(), **{location: value})  # type: ignore[type-var]
