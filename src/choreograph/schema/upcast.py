"""Upcasters: functions that turn a payload of one version into the next, chained on demand.

::

    upcasters = Upcasters()

    @upcasters.step("shop.order.placed", 1, 2)
    def split_name(data):
        first, _, last = data.pop("name").partition(" ")
        return {**data, "first_name": first, "last_name": last}

    upcasters.upcast("shop.order.placed", 1, payload, 3)   # runs 1->2, then 2->3
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any

from choreograph.core.errors import ConfigurationError
from choreograph.core.event import Event
from choreograph.schema.errors import SchemaError, UpcastError

UpcastFunction = Callable[[dict[str, Any]], dict[str, Any]]
"""Takes a payload of the step's source version (a private copy it may change); returns the next one."""


def _type_name(event_type: str | type[Event]) -> str:
    return event_type if isinstance(event_type, str) else event_type.event_type()


class Upcasters:
    """A set of upcast steps per event type. Registration is thread-safe; :meth:`upcast` is pure.

    Each step goes from one version to a higher one (usually the next); at most
    one step may start at a given version of a type.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._steps: dict[str, dict[int, tuple[int, UpcastFunction]]] = {}

    def register(
        self, event_type: str | type[Event], from_version: int, to_version: int, function: UpcastFunction
    ) -> None:
        """Register ``function`` to turn ``from_version`` payloads into ``to_version`` payloads.

        Raises ConfigurationError if ``to_version`` is not higher or a step from
        ``from_version`` already exists.
        """
        name = _type_name(event_type)
        if from_version < 1 or to_version <= from_version:
            raise ConfigurationError(
                f"upcaster for {name} must go to a higher version, got v{from_version} -> v{to_version}"
            )
        with self._lock:
            steps = self._steps.setdefault(name, {})
            if from_version in steps:
                raise ConfigurationError(
                    f"{name} already has an upcaster from v{from_version} (to v{steps[from_version][0]})"
                )
            steps[from_version] = (to_version, function)

    def step(
        self, event_type: str | type[Event], from_version: int, to_version: int
    ) -> Callable[[UpcastFunction], UpcastFunction]:
        """Return a decorator that registers the decorated function as a step."""

        def decorate(function: UpcastFunction) -> UpcastFunction:
            self.register(event_type, from_version, to_version, function)
            return function

        return decorate

    def path(self, event_type: str | type[Event], version: int, target: int) -> list[tuple[int, int]]:
        """Return the steps ``[(from, to), ...]`` from ``version`` to ``target``; raise UpcastError if none."""
        name = _type_name(event_type)
        if target < version:
            raise UpcastError(
                f"cannot upcast {name} v{version} to the older v{target}; "
                f"consumers of v{target} must read v{version} directly (FORWARD compatibility)"
            )
        with self._lock:
            steps = dict(self._steps.get(name, {}))
        route: list[tuple[int, int]] = []
        current = version
        while current < target:
            step = steps.get(current)
            if step is None:
                known = ", ".join(f"v{a}->v{b}" for a, (b, _) in sorted(steps.items())) or "none"
                raise UpcastError(
                    f"no upcaster for {name} from v{current} (needed to reach v{target} from v{version}); "
                    f"registered steps: {known}. Register one with "
                    f"upcasters.register({name!r}, {current}, {current + 1}, function)"
                )
            if step[0] > target:
                raise UpcastError(f"the upcaster for {name} v{current} -> v{step[0]} overshoots the wanted v{target}")
            route.append((current, step[0]))
            current = step[0]
        return route

    def upcast(self, event_type: str | type[Event], version: int, data: dict[str, Any], target: int) -> dict[str, Any]:
        """Return ``data`` (of ``version``) turned into ``target``'s shape by chaining steps.

        ``data`` itself is never modified; the steps get a deep copy. Returns
        ``data`` unchanged when the versions are equal. Raises UpcastError for
        a missing step, a downcast or a step that raises (the step's exception
        is its cause), and SchemaError if a step does not return a dict.
        """
        name = _type_name(event_type)
        route = self.path(name, version, target)
        if not route:
            return data
        with self._lock:
            steps = dict(self._steps.get(name, {}))
        try:
            current = copy.deepcopy(data)
        except Exception as exc:  # RecursionError on a deeply nested payload, say
            raise UpcastError(f"cannot copy the {name} v{version} payload to upcast it: {exc!r}") from exc
        for source, dest in route:
            try:
                result = steps[source][1](current)
            except Exception as exc:
                # The step does not fit this payload (a missing field, a wrong type): the event cannot be
                # read, and a retry would fail the same way.
                raise UpcastError(
                    f"upcaster {name} v{source} -> v{dest} failed on this payload: {type(exc).__name__}: {exc}"
                ) from exc
            if not isinstance(result, dict):
                raise SchemaError(f"upcaster {name} v{source} -> v{dest} returned {type(result).__name__}, not a dict")
            current = result
        return current

    def __contains__(self, event_type: object) -> bool:
        return isinstance(event_type, str) and event_type in self._steps
