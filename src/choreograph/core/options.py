"""Checking broker options and parsing them from a URL's query string.

Every backend takes its settings as a frozen config dataclass and accepts the
same settings as ``?name=value`` in its URL. These helpers make the errors
uniform: they name the option, the bad value, and what is accepted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from choreograph.core.errors import ConfigurationError

Parser = Callable[[str], Any]


def require_positive(name: str, value: object) -> None:
    """Raise ConfigurationError unless ``value`` is a finite number > 0 (seconds, usually)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0 or math.isinf(value):
        raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")


def require_positive_int(name: str, value: object) -> None:
    """Raise ConfigurationError unless ``value`` is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")


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


def optional(convert: Parser) -> Parser:
    """Wrap ``convert`` so that ``""``, ``none`` and ``null`` parse as None."""

    def parse(text: str) -> Any:
        return None if text.lower() in {"", "none", "null"} else convert(text)

    return parse


def boolean(text: str) -> bool:
    """Parse 1/true/yes/on and 0/false/no/off; raise ValueError otherwise."""
    lowered = text.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"not a boolean: {text!r}")


def parse_query(query: str, parsers: Mapping[str, Parser], backend: str) -> dict[str, Any]:
    """Parse ``name=value&...`` with one parser per known option name.

    Raises ConfigurationError naming an unknown option (and listing the known
    ones) or a value its parser refuses.
    """
    options: dict[str, Any] = {}
    for name, text in parse_qsl(query, keep_blank_values=True):
        parser = parsers.get(name)
        if parser is None:
            known = ", ".join(sorted(parsers))
            raise ConfigurationError(f"unknown {backend} broker option {name!r} in URL; known options: {known}")
        try:
            options[name] = parser(text)
        except ValueError as exc:
            raise ConfigurationError(f"{backend} broker option {name}={text!r} is invalid: {exc}") from None
    return options


def sqlite_file_path(url: str) -> str:
    """Return the file path of a ``sqlite:///path.db`` URL (its query options are not checked here).

    ``sqlite:///./x.db`` is relative to the working directory and
    ``sqlite:////abs/x.db`` is absolute. Raises ConfigurationError for another
    scheme, a host, or no path (an in-memory database cannot be shared).
    """
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        raise ConfigurationError(f"not a sqlite URL (expected sqlite:///path.db): {url!r}")
    if parts.netloc:
        raise ConfigurationError(
            f"sqlite URL has a host {parts.netloc!r}; write sqlite:///relative.db or sqlite:////abs.db"
        )
    path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
    if not path or path == ":memory:":
        raise ConfigurationError(f"sqlite URL needs a file path (in-memory is not shared): {url!r}")
    return path
