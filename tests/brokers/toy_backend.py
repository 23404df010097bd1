"""A backend that a third-party distribution could ship: registered through an entry point only."""

from __future__ import annotations

from choreograph.brokers.memory import MemoryBroker
from choreograph.core.clock import Clock
from choreograph.core.errors import ConfigurationError


class ToyBroker(MemoryBroker):
    """The memory broker under the ``toy://`` scheme."""

    @classmethod
    def from_url(cls, url: str, *, clock: Clock | None = None) -> ToyBroker:
        if url != "toy://":
            raise ConfigurationError(f"not a toy URL: {url!r}")
        return cls(clock=clock)
