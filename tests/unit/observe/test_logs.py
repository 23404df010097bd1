"""Structured logs: handling context on every line, JSON and console formats."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest

from choreograph import App, Context, Event
from choreograph.brokers.memory import MemoryBroker
from choreograph.observe import logs
from choreograph.observe.logs import (
    ConsoleFormatter,
    ContextFilter,
    JsonFormatter,
    bound_fields,
    configure_logging,
    current_fields,
    install_log_context,
)
from tests.conftest import wait_until


class Said(Event, type="logs.said"):
    words: str


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """JSON lines of the ``logs.test`` logger, through the filter and formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("logs.test")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines() if line]


async def test_lines_logged_while_handling_carry_the_events_context(captured: io.StringIO) -> None:
    # Given a handler that logs through a plain stdlib logger, with the log context installed
    app = App("speaker", broker=MemoryBroker())
    install_log_context(app)

    @app.service("listener").on(Said)
    async def hear(event: Said, ctx: Context) -> None:
        logging.getLogger("logs.test").info("heard %s", event.words)

    # When an event is handled
    await app.start()
    try:
        envelope = await app.publish(Said(words="hello"))
        await wait_until(lambda: bool(captured.getvalue()), 10, "a log line")
    finally:
        await app.stop()
    # Then the line carries correlation, causation, event id and type, service, handler and attempt
    (line,) = lines(captured)
    assert line["message"] == "heard hello"
    assert line["correlation_id"] == envelope.correlationid
    assert line["event_id"] == envelope.id
    assert line["event_type"] == "logs.said"
    assert line["service"] == "listener"
    assert line["handler"] == "hear"
    assert line["attempt"] == 1
    assert "causation_id" not in line  # a fresh publish has no cause
    # and outside handling the context is empty again
    assert current_fields() == {}


def test_bound_fields_nest_and_extras_win(captured: io.StringIO) -> None:
    logger = logging.getLogger("logs.test")
    with bound_fields(correlation_id="c1", service="a"), bound_fields(service="b"):
        logger.info("inner", extra={"handler": "explicit"})
    logger.info("outside")
    inner, outside = lines(captured)
    assert (inner["correlation_id"], inner["service"], inner["handler"]) == ("c1", "b", "explicit")
    assert "correlation_id" not in outside


def test_json_lines_include_level_logger_time_and_exception(captured: io.StringIO) -> None:
    logger = logging.getLogger("logs.test")
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("it failed")
    (line,) = lines(captured)
    assert line["level"] == "error"
    assert line["logger"] == "logs.test"
    assert str(line["time"]).endswith("Z")
    assert "ValueError: boom" in str(line["exception"])


def test_console_format_is_one_readable_line_with_the_context() -> None:
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "slow %s", ("disk",), None)
    record.correlation_id = "0193-abcdef123456"
    record.event_type = "shop.order.placed"
    record.service, record.handler = "inventory", "reserve"
    text = ConsoleFormatter().format(record)
    assert "WARNING" in text
    assert "slow disk" in text
    assert "corr=abcdef123456" in text
    assert "handler=inventory.reserve" in text


def test_console_format_cannot_be_forged_by_fields_or_drive_the_terminal() -> None:
    # Given a record whose message and context come from a hostile event
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "handled %s", ("evt-1\n12:00:00.000 ERROR  forged  line",), None
    )
    record.correlation_id = "c\x1b]0;pwned\x07\x1b[2J"
    record.event_type = "t.\u202eevil\r\nfake"
    record.service, record.handler = "svc\n", "h\x1b[31m"

    # When it is formatted for the console
    text = ConsoleFormatter().format(record)

    # Then it is one line, with every control character shown as an escape
    assert "\n" not in text and "\r" not in text
    assert "\x1b" not in text and "\u202e" not in text and "\x07" not in text
    assert "evt-1\\n12:00:00.000 ERROR  forged  line" in text
    assert "type=t.\\u202eevil\\r\\nfake" in text


def test_log_lines_hide_credentials_of_urls_in_the_message() -> None:
    record = logging.LogRecord(
        "x", logging.WARNING, __file__, 1, "state kept for %s", ("redis://app:hunter2@db:6379/0?token=t0ken",), None
    )
    for formatter in (ConsoleFormatter(), JsonFormatter()):
        text = formatter.format(record)
        assert "hunter2" not in text and "t0ken" not in text
        assert "redis://app:***@db:6379/0" in text


def test_configure_logging_replaces_only_its_own_handler() -> None:
    root = logging.getLogger()
    # Handlers someone else installed (pytest's, say) must survive; an earlier
    # configure_logging() call's own handler is replaced like any other.
    configure_logging(stream=io.StringIO())
    before = [h for h in root.handlers if not getattr(h, logs._HANDLER_MARK, False)]
    level = root.level
    try:
        first = configure_logging(json=True, level="DEBUG", stream=io.StringIO())
        second = configure_logging(json=False, level=logging.INFO, stream=io.StringIO())
        assert first not in root.handlers
        assert second in root.handlers
        assert isinstance(second.formatter, ConsoleFormatter)
        assert root.level == logging.INFO
        assert [h for h in root.handlers if h is not second] == before
    finally:
        root.removeHandler(second)
        root.setLevel(level)
