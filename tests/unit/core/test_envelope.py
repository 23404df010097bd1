"""Envelope's and Delivery's hand-written constructors keep the dataclass contract: every field, immutable."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest

from choreograph.core.broker import Delivery
from choreograph.core.envelope import Envelope


@pytest.mark.parametrize("cls", [Envelope, Delivery])
def test_the_constructor_takes_every_field_in_order_with_its_default(cls: type[Any]) -> None:
    fields = dataclasses.fields(cls)
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    assert [p.name for p in parameters] == [f.name for f in fields]
    for parameter, f in zip(parameters, fields, strict=True):
        if f.default is not dataclasses.MISSING:
            assert parameter.default == f.default, f.name
        else:
            assert parameter.default in (inspect.Parameter.empty, None), f.name  # None: a fresh default


@pytest.mark.parametrize("cls", [Envelope, Delivery])
def test_every_field_is_stored_and_frozen(cls: type[Any]) -> None:
    values: dict[str, Any] = {f.name: f"value-{f.name}" for f in dataclasses.fields(cls)}
    instance = cls(**values)
    assert dataclasses.asdict(instance) == values
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(instance, dataclasses.fields(cls)[0].name, "other")
    assert instance == cls(**values)
    assert dataclasses.replace(instance) == instance


def test_mutable_defaults_are_fresh() -> None:
    first, second = Envelope(id="a", source="s", type="t"), Envelope(id="a", source="s", type="t")
    assert first.extensions == {} and first.extensions is not second.extensions
    assert Delivery("t", 0, 0, b"").headers == {}
    assert Envelope(id="a", source="s", type="t").replace(subject="s2").subject == "s2"
