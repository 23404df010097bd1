"""Structured logs: every line written while handling carries the event's context.

- :func:`log_context` is a handler middleware that puts ``ctx.log_fields``
  (correlation id, causation id, event id and type, service, handler) and the
  attempt in a context variable for the duration of the handling;
- :class:`ContextFilter` copies those fields, and the current trace and span
  ids when a span is recording, onto each log record;
- :class:`JsonFormatter` writes one JSON object per line (for production),
  :class:`ConsoleFormatter` a readable line (for development);
- :func:`configure_logging` wires them to the root logger.

Context variables follow asyncio tasks, so concurrent handlers never see each
other's fields.
"""

from __future__ import annotations

import logging
import sys
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any, Final

import orjson

from choreograph.core.envelope import Envelope
from choreograph.core.printable import printable
from choreograph.core.redaction import redact_text
from choreograph.observe.tracing import current_trace_fields
from choreograph.runtime.app import App
from choreograph.runtime.context import Context
from choreograph.runtime.middleware import Handler

CONTEXT_FIELDS: Final = (
    "correlation_id",
    "causation_id",
    "event_id",
    "event_type",
    "service",
    "handler",
    "attempt",
    "trace_id",
    "span_id",
)
"""Fields the filter may add to a record, in the order the formatters print them."""

_fields: ContextVar[Mapping[str, Any] | None] = ContextVar("choreograph_log_fields", default=None)

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD: Final = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime", "taskName"}
)


def current_fields() -> Mapping[str, Any]:
    """Return the handling fields of the current task (empty outside a handler)."""
    return _fields.get() or {}


@contextmanager
def bound_fields(**fields: Any) -> Iterator[None]:
    """Add ``fields`` to every log line written inside the block (nested blocks merge)."""
    token = _fields.set({**current_fields(), **fields})
    try:
        yield
    finally:
        _fields.reset(token)


def log_context(handler: Handler) -> Handler:
    """Bind the event's log fields for the duration of the handling (a Middleware)."""

    async def bound(envelope: Envelope, ctx: Context) -> None:
        token = _fields.set({**ctx.log_fields, "attempt": ctx.attempt})
        try:
            await handler(envelope, ctx)
        finally:
            _fields.reset(token)

    return bound


_installed: weakref.WeakSet[App] = weakref.WeakSet()


def install_log_context(app: App) -> None:
    """Make every log line written while ``app`` handles an event carry its context. Idempotent."""
    if app in _installed:
        return
    app.use(log_context)
    _installed.add(app)


class ContextFilter(logging.Filter):
    """Copy the handling fields and trace ids onto each record; never drops a record.

    Fields already on the record (from ``extra=``) win.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the fields and return True."""
        for source in (_fields.get(), current_trace_fields()):
            if source:
                for name, value in source.items():
                    if name not in record.__dict__:
                        setattr(record, name, value)
        return True


def _iso(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """Format each record as one JSON object: time, level, logger, message, context, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the JSON line (no trailing newline)."""
        doc: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact_text(record.getMessage()),
        }
        extras = _extras(record)
        for name in CONTEXT_FIELDS:
            field_value = extras.pop(name, None)
            if field_value is not None:
                doc[name] = field_value
        doc.update(extras)
        if record.exc_info:
            doc["exception"] = redact_text(self.formatException(record.exc_info))
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(doc, default=repr).decode()


class ConsoleFormatter(logging.Formatter):
    """Format a record for humans: ``12:00:01.234 INFO  logger  message  corr=… type=… handler=…``.

    One record is one line (plus its traceback): the message and every field
    are shown with newlines, terminal escape sequences and other control
    characters as visible escapes (``\\n``, ``\\x1b``), so an event id or type
    from the log cannot forge lines or drive the terminal; credentials in
    URL-shaped parts of the message are redacted.
    """

    def format(self, record: logging.LogRecord) -> str:
        """Return the line, with the exception below it if any."""
        stamp = datetime.fromtimestamp(record.created).strftime("%H:%M:%S.%f")[:-3]
        extras = _extras(record)
        context = []
        corr = extras.get("correlation_id")
        if corr:
            context.append(f"corr={printable(str(corr)[-12:])}")
        if extras.get("event_type"):
            context.append(f"type={printable(extras['event_type'])}")
        if extras.get("service") and extras.get("handler"):
            context.append(f"handler={printable(extras['service'])}.{printable(extras['handler'])}")
        if extras.get("attempt") not in (None, 1):
            context.append(f"attempt={printable(extras['attempt'])}")
        message = printable(redact_text(record.getMessage()))
        line = f"{stamp} {record.levelname:<7} {printable(record.name)}  {message}"
        if context:
            line += "  [" + " ".join(context) + "]"
        if record.exc_info:
            line += "\n" + printable(redact_text(self.formatException(record.exc_info)), keep_newlines=True)
        return line


_HANDLER_MARK: Final = "_choreograph_handler"


def configure_logging(
    json: bool = False, level: int | str = "INFO", *, stream: IO[str] | None = None
) -> logging.Handler:
    """Send the root logger's records to ``stream`` (stderr) as JSON lines or readable lines.

    Idempotent: a handler installed by an earlier call is replaced, handlers
    installed by others are kept. Returns the handler.
    """
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, _HANDLER_MARK, False):
            root.removeHandler(existing)
    handler = logging.StreamHandler(stream or sys.stderr)
    setattr(handler, _HANDLER_MARK, True)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if json else ConsoleFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return handler
