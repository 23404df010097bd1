"""Shared CLI plumbing: the broker option, error-to-exit-code mapping, output consoles."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from functools import wraps
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console

from choreograph.core.errors import (
    BrokerError,
    BrokerUnavailable,
    ChoreographError,
    ConfigurationError,
    NotFound,
    UnknownTopic,
)

# Piped output (scripts, CI logs) gets wide tables instead of 80 squeezed columns.
_WIDTH = None if sys.stdout.isatty() else 200
out = Console(highlight=False, width=_WIDTH)
err = Console(stderr=True, highlight=False, width=_WIDTH)

EXIT_OK = 0
EXIT_FAILED = 1
"""The command ran but found a problem (not found, incompatible, failures)."""
EXIT_USAGE = 2
"""Bad input: arguments, JSON, module, URL."""
EXIT_UNAVAILABLE = 3
"""The broker could not be reached."""

BrokerOption = Annotated[
    str | None,
    typer.Option(
        "--broker",
        "-b",
        envvar="CHOREOGRAPH_BROKER",
        help="Broker URL (memory://, sqlite:///path.db). Default: $CHOREOGRAPH_BROKER or sqlite:///./choreograph.db",
        show_default=False,
    ),
]

P = ParamSpec("P")
R = TypeVar("R")


def fail(message: str, code: int = EXIT_FAILED) -> typer.Exit:
    """Print ``message`` to stderr and return the Exit to raise."""
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def run_async(func: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, R]:
    """Run an async command in a fresh event loop, mapping choreograph errors to exit codes."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return asyncio.run(func(*args, **kwargs))
        except BrokerUnavailable as exc:
            raise fail(f"broker unavailable: {exc}", EXIT_UNAVAILABLE) from None
        except (UnknownTopic, NotFound) as exc:
            raise fail(str(exc), EXIT_FAILED) from None
        except ConfigurationError as exc:
            raise fail(str(exc), EXIT_USAGE) from None
        except BrokerError as exc:
            raise fail(f"broker error: {exc}", EXIT_UNAVAILABLE) from None
        except ChoreographError as exc:
            raise fail(str(exc), EXIT_FAILED) from None
        except KeyboardInterrupt:
            sys.exit(130)

    return wrapper


def fmt_time(epoch: float | None) -> str:
    """Format epoch seconds as a compact UTC timestamp."""
    if not epoch:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
