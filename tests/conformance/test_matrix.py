"""The capability matrix is generated from declared capabilities, and the docs are in sync."""

import dataclasses
from pathlib import Path

from choreograph.brokers.memory import MemoryBroker
from choreograph.core.broker import Capabilities
from choreograph.testing import BrokerConformance
from choreograph.testing.matrix import main, render
from choreograph.testing.scenario import scenarios

DOC = Path(__file__).parents[2] / "docs" / "conformance.md"


def test_every_scenario_of_sections_a_and_b_appears() -> None:
    page = render([("memory", MemoryBroker.capabilities)])
    numbers = {info.number for _, info in scenarios(BrokerConformance)}
    assert {f"A{i}" for i in range(1, 16)} <= numbers
    assert {"B16", "B18", "B19", "B20", "B21", "B24"} <= numbers
    for number in numbers:
        assert f"| {number} |" in page


def test_a_missing_capability_is_listed_as_weaker_or_not_applicable() -> None:
    page = render([("memory", MemoryBroker.capabilities)])
    assert "| A11 | " in page
    assert "**memory, A11** (n/a): no `persistent`" in page
    assert "**memory, A10** (weaker): no `cross_process`: the member stops dead in-process" in page
    everything = {field.name: True for field in dataclasses.fields(Capabilities)}
    full = render([("all", Capabilities(**everything))])
    assert "Every backend runs every scenario in full." in full


def test_the_docs_page_is_the_generated_one() -> None:
    assert DOC.read_text() == main([]), (
        "docs/conformance.md is stale; run: .venv/bin/python -m choreograph.testing.matrix > docs/conformance.md"
    )
