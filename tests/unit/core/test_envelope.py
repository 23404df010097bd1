"""Envelope's hand-written constructor keeps the dataclass contract: every field, immutable."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from choreograph.core.envelope import Envelope


def test_the_constructor_takes_every_field_in_order_with_its_default() -> None:
    fields = dataclasses.fields(Envelope)
    parameters = list(inspect.signature(Envelope.__init__).parameters.values())[1:]
    assert [p.name for p in parameters] == [f.name for f in fields]
    for parameter, f in zip(parameters, fields, strict=True):
        if f.default is not dataclasses.MISSING:
            assert parameter.default == f.default, f.name
    assert Envelope(id="a", source="s", type="t").extensions == {}


def test_every_field_is_stored_and_frozen() -> None:
    values = {f.name: f"value-{f.name}" for f in dataclasses.fields(Envelope)}
    values["extensions"] = {"x": 1}  # type: ignore[assignment]
    envelope = Envelope(**values)  # type: ignore[arg-type]
    assert dataclasses.asdict(envelope) == values
    with pytest.raises(dataclasses.FrozenInstanceError):
        envelope.id = "other"  # type: ignore[misc]
    assert envelope.replace(subject="s2").subject == "s2"
    assert envelope == Envelope(**values)  # type: ignore[arg-type]
    assert Envelope(id="a", source="s", type="t").extensions is not Envelope(id="a", source="s", type="t").extensions
