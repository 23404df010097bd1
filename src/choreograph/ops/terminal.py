"""Shared CLI plumbing: the broker option, error-to-exit-code mapping, and safe terminal output.

Everything a command prints that came from the log or the broker (types, keys,
ids, topic and group names, error messages, payloads) is untrusted. It goes
through :func:`cell` (a table cell), :func:`safe` (a piece of a markup string)
or :func:`emit_json` (a ``--json`` line), never into markup as is: Rich markup
in it is shown literally, control characters and terminal escape sequences
are shown as visible escapes (``\\x1b``), and a newline cannot forge a line.
Broker URLs shown in messages go through :mod:`choreograph.core.redaction`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime
from functools import wraps
from typing import Annotated, Any, ParamSpec, TypeVar

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from choreograph import brokers
from choreograph.brokers import DEFAULT_URL, ENV_VAR, resolve_url
from choreograph.core.errors import (
    BrokerError,
    BrokerUnavailable,
    ChoreographError,
    ConfigurationError,
    NotFound,
    UnknownTopic,
)
from choreograph.core.printable import printable
from choreograph.core.redaction import redact_text, redact_url

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

# Broker URLs given to this process: error messages are scrubbed of their secrets.
_broker_urls: list[str] = []


def remember_broker(url: str | None) -> str | None:
    """Note ``url`` (an option callback) so that every error this process prints hides its secrets."""
    if url and url not in _broker_urls:
        _broker_urls.append(url)
    return url


def broker_schemes() -> list[str]:
    """Every broker URL scheme choreograph can open (``memory://``, ``sqlite://``, ...), from the backend table."""
    return [f"{scheme}://" for scheme in brokers.backends()]  # the one registry of backends; not repeated here


def schemes_text() -> str:
    """The broker URL schemes as prose: ``memory://, sqlite://, ... or kafka://``."""
    names = broker_schemes()
    return f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else "".join(names)


BrokerOption = Annotated[
    str | None,
    typer.Option(
        "--broker",
        "-b",
        metavar="URL",
        envvar=ENV_VAR,
        help=f"Broker URL: {schemes_text()} (e.g. sqlite:///path.db, nats://host:4222). "
        f"Default: ${ENV_VAR} or {DEFAULT_URL}",
        show_default=False,
        show_envvar=False,
        callback=remember_broker,
    ),
]

P = ParamSpec("P")
R = TypeVar("R")


def scrub(message: object) -> str:
    """Return ``message`` with the secrets of every broker URL this process knows redacted (not escaped)."""
    return redact_text(str(message), *_broker_urls, resolve_url(None))


def shown_url(url: str) -> str:
    """Return a broker URL fit for display: credentials redacted, control characters visible, markup escaped."""
    return safe(redact_url(url))


def fail(message: str, code: int = EXIT_FAILED) -> typer.Exit:
    """Print ``message`` to stderr (secrets redacted, shown as plain text) and return the Exit to raise."""
    # Multi-line explanations stay readable: each further line is indented, so none can
    # pass for a line of its own; escape sequences are still shown as text.
    text = "\n  ".join(printable(line) for line in scrub(message).split("\n"))
    err.print(f"[bold red]error:[/] {escape(text)}", soft_wrap=True)
    return typer.Exit(code)


def safe(value: object) -> str:
    """Return untrusted ``value`` as a piece of a Rich markup string: markup escaped, controls visible."""
    return escape(printable(value))


def cell(value: object, style: str = "") -> Text:
    """Return untrusted ``value`` as a table cell: plain text (no markup), controls visible, one line."""
    return Text(printable(value), style=style)


def plain(text: str) -> None:
    """Write ``text`` (already made printable) as one line of stdout: no markup, no wrapping, no highlighting."""
    stream = sys.stdout
    stream.write(text + "\n")
    stream.flush()


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"base64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    return value


def json_line(doc: object) -> str:
    """Return ``doc`` as one line of JSON; bytes as ``{"base64": ...}``; controls and bidi characters escaped.

    Only printable characters remain raw, so the line is safe on a terminal and
    one ``json.loads`` per line reads it back.
    """
    try:
        line = orjson.dumps(_jsonable(doc), default=str).decode()
    except TypeError:  # lone surrogates: the standard library escapes them
        line = json.dumps(_jsonable(doc), default=str, ensure_ascii=True)
    if line.isprintable():
        return line
    # Outside JSON strings every character is printable ASCII, so each one left is inside a string.
    return "".join(char if char.isprintable() else _json_escape(char) for char in line)


def json_block(doc: object) -> str:
    """Return ``doc`` as indented JSON for people, with the same escaping as :func:`json_line`."""
    text = json.dumps(_jsonable(doc), indent=2, ensure_ascii=False, default=str)
    # json.dumps escapes every C0 control inside strings: a raw newline is indentation.
    return "".join(char if char.isprintable() or char == "\n" else _json_escape(char) for char in text)


def _json_escape(char: str) -> str:
    code = ord(char)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def one_line(raw: str) -> str:
    r"""Return a raw value (JSON, usually) as one safe line that is still the same JSON.

    In valid JSON a line break or tab can only be whitespace between tokens, so
    it becomes a space; any other invisible character can only be inside a
    string, so it becomes its ``\uXXXX`` escape. Text that is not JSON comes
    out just as safe: one line, no raw control character.
    """
    if raw.isprintable():
        return raw
    return "".join(char if char.isprintable() else " " if char in "\n\r\t" else _json_escape(char) for char in raw)


def emit_json(doc: object) -> None:
    """Write ``doc`` to stdout as one JSON line (never wrapped, whatever the terminal width)."""
    plain(json_line(doc))


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
        except OSError as exc:  # a client library's own connection error: shown scrubbed, not as a traceback
            raise fail(f"I/O error ({type(exc).__name__}): {exc}", EXIT_UNAVAILABLE) from None
        except KeyboardInterrupt:
            sys.exit(130)

    return wrapper


def fmt_time(epoch: float | None) -> str:
    """Format epoch seconds as a compact UTC timestamp."""
    if not epoch:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
