"""Tuning of the consumer loop: batch size, timeouts, restart and straggler delays."""

from __future__ import annotations

from dataclasses import dataclass

from choreograph.core import codec
from choreograph.core.errors import ConfigurationError
from choreograph.runtime.supervisor import Backoff


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    """Tuning of the consumer loop."""

    batch_size: int = 500
    fetch_timeout: float = 0.5
    max_message_size: int = codec.DEFAULT_MAX_SIZE
    resubscribe_delay: float = 0.5
    restart_delay: float = 0.5
    """Seconds before a consumer that crashed (a runtime failure, not a handler's) first restarts."""
    max_restart_delay: float = 30.0
    """The restart delay doubles after each crash in a row, up to this many seconds."""
    straggler_delay: float = 0.5
    """Seconds a batch waits for its slowest key lanes: past it, the lanes that are done commit (acks, outputs,
    inbox) without them, and each late lane commits when it finishes. One slow handler then neither delays
    other keys' commits nor widens what a crash makes run again."""

    def __post_init__(self) -> None:
        Backoff(self.restart_delay, self.max_restart_delay)  # raises ConfigurationError for bad delays
        if not self.straggler_delay > 0:  # also refuses nan
            raise ConfigurationError(f"straggler_delay must be > 0 seconds, got {self.straggler_delay}")
