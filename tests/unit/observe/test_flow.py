from __future__ import annotations

import pytest

from choreograph import ConfigurationError
from choreograph.observe.flows import Compensation, EventRef, Flow
from tests.unit.observe.conftest import FLOW, Cancelled, Done, Placed, Reserved


def test_flow_lists_every_topic_it_mentions() -> None:
    assert FLOW.topics == tuple(
        sorted(
            {
                "test.flow.placed",
                "test.flow.reserved",
                "test.flow.charged",
                "test.flow.declined",
                "test.flow.released",
                "test.flow.done",
                "test.flow.cancelled",
            }
        )
    )
    assert FLOW.group == "observer.order"


def test_kind_of_classifies_event_types() -> None:
    assert FLOW.kind_of("test.flow.placed") == "start"
    assert FLOW.kind_of("test.flow.done") == "success"
    assert FLOW.kind_of("test.flow.cancelled") == "failure"
    assert FLOW.kind_of("test.flow.released") == "step"
    assert FLOW.kind_of("other.type") is None


def test_event_refs_name_foreign_types_and_topics() -> None:
    flow = Flow("x", start=["a.started"], success=[EventRef("a.done", topic="a-events")])
    assert flow.topics == ("a-events", "a.started")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "Bad Name", "start": [Placed], "success": [Done]},
        {"name": "x", "start": [], "success": [Done]},
        {"name": "x", "start": [Placed], "success": []},
        {"name": "x", "start": [Placed], "success": [Done], "timeout": 0},
        {"name": "x", "start": [Placed], "success": [Placed]},
        {"name": "x", "start": [Placed], "success": [Done], "failure": [Done]},
    ],
)
def test_invalid_declarations_fail_with_a_clear_error(kwargs: dict[str, object]) -> None:
    name = kwargs.pop("name")
    with pytest.raises(ConfigurationError):
        Flow(name, **kwargs)  # type: ignore[arg-type]


def test_compensation_needs_a_positive_timeout() -> None:
    with pytest.raises(ConfigurationError, match="timeout"):
        Compensation(Reserved, undo=Cancelled, timeout=-1)
