"""Reading ``choreograph replay``'s arguments: positions, times, offset ranges, replay names.

A ConfigurationError raised while reading them is bad input (exit 2): wrap the
reading in :func:`usage_errors`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime

from choreograph.core.broker import Position
from choreograph.core.enums import StartKind
from choreograph.core.errors import ConfigurationError
from choreograph.ops.terminal import EXIT_USAGE, fail

MAX_NAME = 120
"""Longest replay name: it is a key-value key and a file name."""


@contextlib.contextmanager
def usage_errors() -> Iterator[None]:
    """Report a ConfigurationError raised while reading the arguments as bad input (exit 2), not a traceback."""
    try:
        yield
    except ConfigurationError as exc:
        raise fail(str(exc), EXIT_USAGE) from None


def check_replay_name(name: str) -> str:
    """Refuse a ``--name`` that is no safe key and file name (1-120 of letters, digits, ``.``, ``_``, ``-``)."""
    if not (0 < len(name) <= MAX_NAME) or not all(c.isascii() and (c.isalnum() or c in "._-") for c in name):
        raise ConfigurationError(f"--name {name[:40]!r}: use 1-{MAX_NAME} letters, digits, '.', '_' or '-'")
    return name


def parse_position(text: str, option: str) -> Position:
    """Parse ``earliest``, ``latest``, epoch seconds, an ISO time, or ``P:OFFSET,P:OFFSET`` offsets."""
    if text in (StartKind.EARLIEST, StartKind.LATEST):
        return Position.earliest() if text == StartKind.EARLIEST else Position.latest()
    if ":" in text and all(part.partition(":")[0].strip().isdigit() for part in text.split(",")):
        try:
            return Position.at_offsets({int(p): int(o) for p, o in (part.split(":") for part in text.split(","))})
        except ValueError:
            pass
    when = parse_time(text, option)
    return Position.at_time(when)


def parse_time(text: str, option: str) -> float:
    """Parse epoch seconds or an ISO time (``2026-11-26T10:00:00``, local time unless it says otherwise)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ConfigurationError(
            f"{option} {text!r}: use earliest, latest, epoch seconds, an ISO time like 2026-11-26T10:00:00"
            + (" or offsets like 0:120,1:98" if option in ("--to", "--from") else "")
        ) from None


def parse_offset_ranges(text: str) -> tuple[dict[int, int], dict[int, int]]:
    """Parse ``--offsets 0:10-20,1:5-``: per partition a first offset and, if given, an end (exclusive)."""
    first: dict[int, int] = {}
    end: dict[int, int] = {}
    for part in text.split(","):
        partition, _, span = part.strip().partition(":")
        low, dash, high = span.partition("-")
        if not (partition.isdigit() and low.isdigit() and dash and (not high or high.isdigit())):
            raise ConfigurationError(
                f"--offsets {text!r}: write PARTITION:FIRST-END pairs like 0:10-20,1:5- (END exclusive)"
            )
        first[int(partition)] = int(low)
        if high:
            end[int(partition)] = int(high)
    return first, end
