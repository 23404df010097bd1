"""What every conformance scenario shares: its declaration, the backend hooks, small helpers.

A scenario is a plain ``async def test_...(self)`` method decorated with
:func:`scenario`, which records its CONFORMANCE.md number, title, and which
missing capability turns it into a weaker assertion (or makes it not
applicable). The capability matrix in ``docs/`` is generated from these
declarations, so the suite and the docs cannot drift apart.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Final, TypeVar

from choreograph.core.broker import Broker, Capabilities, Record
from choreograph.core.clock import Clock
from choreograph.testing.checker import DELIVERED_AFTER_ACK, DUPLICATE, LOST, REORDERED, UNSEEN
from choreograph.testing.faults import ChildBroker
from choreograph.testing.history import MESSAGE_ID_HEADER

F = TypeVar("F", bound=Callable[..., Any])

FULL: Final = "full"
WEAKER: Final = "weaker"
NOT_APPLICABLE: Final = "n/a"

_CAPABILITY_NAMES: Final = frozenset(f.name for f in fields(Capabilities))


@dataclass(frozen=True, slots=True)
class Degrade:
    """When ``capability`` is False, the scenario asserts less (``weaker``) or does not apply (``n/a``)."""

    capability: str
    level: str
    note: str

    def __post_init__(self) -> None:
        if self.capability not in _CAPABILITY_NAMES:
            raise ValueError(f"unknown capability {self.capability!r}; known: {sorted(_CAPABILITY_NAMES)}")
        if self.level not in (WEAKER, NOT_APPLICABLE):
            raise ValueError(f"level must be {WEAKER!r} or {NOT_APPLICABLE!r}, got {self.level!r}")


def weaker(capability: str, note: str) -> Degrade:
    """Without ``capability`` the scenario runs a weaker assertion, described by ``note``."""
    return Degrade(capability, WEAKER, note)


def not_applicable(capability: str, note: str) -> Degrade:
    """Without ``capability`` the scenario does not apply; ``note`` says what still runs."""
    return Degrade(capability, NOT_APPLICABLE, note)


@dataclass(frozen=True, slots=True)
class ScenarioInfo:
    """A scenario's number in CONFORMANCE.md (e.g. ``A5``), title, and degradations."""

    number: str
    title: str
    degrades: tuple[Degrade, ...] = ()

    @property
    def section(self) -> str:
        """The CONFORMANCE.md section letter."""
        return self.number[0]

    def status(self, capabilities: Capabilities) -> tuple[str, list[str]]:
        """Return (``full`` / ``weaker`` / ``n/a``, notes) for a backend with ``capabilities``."""
        hits = [d for d in self.degrades if not getattr(capabilities, d.capability)]
        if not hits:
            return FULL, []
        level = NOT_APPLICABLE if any(d.level == NOT_APPLICABLE for d in hits) else WEAKER
        return level, [f"no `{d.capability}`: {d.note}" for d in hits]


def scenario(number: str, title: str, *degrades: Degrade) -> Callable[[F], F]:
    """Declare a test method as conformance scenario ``number``."""

    def mark(method: F) -> F:
        method.__conformance__ = ScenarioInfo(number, title, degrades)  # type: ignore[attr-defined]
        return method

    return mark


def scenarios(cls: type) -> list[tuple[str, ScenarioInfo]]:
    """Return (method name, info) of every scenario of ``cls``, in CONFORMANCE.md order."""
    found = []
    for name in dir(cls):
        info = getattr(getattr(cls, name), "__conformance__", None)
        if isinstance(info, ScenarioInfo):
            found.append((name, info))
    return sorted(found, key=lambda item: (item[1].section, _number(item[1].number), item[0]))


def _number(number: str) -> tuple[int, str]:
    digits = "".join(c for c in number[1:] if c.isdigit())
    return (int(digits) if digits else 0, number)


class ConformanceBase:
    """The hooks a backend provides, and the helpers every scenario uses.

    Subclass :class:`~choreograph.testing.conformance.BrokerConformance`, not this.
    """

    capabilities: ClassVar[Capabilities] = Capabilities()
    """What the backend guarantees; a missing capability selects weaker assertions."""
    accepts_clock: ClassVar[bool] = False
    """True if :meth:`make_broker` honours its ``clock`` argument (timestamps, retry due times)."""
    lease_timeout: ClassVar[float | None] = None
    """Seconds after which a silent member loses its deliveries (cross-process backends with leases)."""
    timeout: ClassVar[float] = 10.0
    """Upper bound, in seconds, of every wait in a scenario (reached only when something is wrong)."""

    async def make_broker(self, clock: Clock | None = None) -> Broker:
        """Return a new, empty broker; use ``clock`` if the backend accepts one."""
        raise NotImplementedError(f"{type(self).__name__} must define `async def make_broker(self, clock=None)`")

    async def reopen_broker(self, broker: Broker) -> Broker:
        """Close ``broker`` (its process, for server backends) and open the same storage again.

        Required when ``capabilities.persistent`` is True.
        """
        raise NotImplementedError(
            f"{type(self).__name__} declares persistent=True, so it must define "
            "`async def reopen_broker(self, broker)` returning the same broker reopened"
        )

    def child_broker(self, broker: Broker) -> ChildBroker | None:
        """Return how a child process opens the same broker (required when ``cross_process``)."""
        return None

    # -- helpers ----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def broker(self, clock: Clock | None = None) -> AsyncIterator[Broker]:
        """Open a fresh broker for one scenario and close it afterwards."""
        opened = await self.make_broker(clock)
        try:
            yield opened
        finally:
            await opened.close()

    @staticmethod
    def names(label: str = "s") -> tuple[str, str]:
        """Return a fresh (topic, group) pair."""
        suffix = uuid.uuid4().hex[:10]
        return f"conformance.{label}.{suffix}", f"group-{label}-{suffix}"

    @staticmethod
    def records(prefix: str, count: int, *, keys: Sequence[str | None] | None = None) -> list[Record]:
        """Return ``count`` records ``<prefix>-<i>`` carrying their id header, keys taken in turn."""
        out = []
        for i in range(count):
            mid = f"{prefix}-{i}"
            key = keys[i % len(keys)] if keys else None
            out.append(Record(mid.encode(), key=key, headers={MESSAGE_ID_HEADER: mid}))
        return out

    def forbid(self, *, ordered: bool = False, exact: bool = False) -> set[str]:
        """Anomalies this backend's guarantees forbid in a scenario.

        Always lost, unseen and delivered-after-ack; reordering too when the
        scenario publishes per key in order and the backend has ``per_key_order``;
        duplicates too when nothing fails in the scenario (``exact``).
        """
        out = {LOST, UNSEEN, DELIVERED_AFTER_ACK}
        if ordered and self.capabilities.per_key_order:
            out.add(REORDERED)
        if exact:
            out.add(DUPLICATE)
        return out
