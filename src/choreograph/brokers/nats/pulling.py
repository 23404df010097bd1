"""Pull state of a NATS subscription: what a member buffers and holds, and what a delivery's subjects say.

Data and pure helpers shared by :mod:`.subscription` (pulling, leases) and
:mod:`.settling` (settle, inbox); see :mod:`.subscription` for how pulling works.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final

from nats.aio.msg import Msg

from choreograph.brokers.nats.bookkeeping import Entry

logger = logging.getLogger("choreograph.brokers.nats")

PULL_EXPIRES: Final = 0.5
"""Seconds a pull request lingers on the server waiting for records."""
GRACE: Final = 0.5
"""Seconds past its expiry an unanswered pull request is given up and re-issued."""


@dataclass(slots=True)
class _Held:
    """A record handed to the application and not settled yet."""

    msg: Msg
    seq: int
    touched: float
    entry: Entry | None
    part: _Partition | None = None
    """The partition state it was fetched under: a lease lost and taken again is a new one (see settle)."""


@dataclass(slots=True)
class _Partition:
    """Pull state of one leased partition."""

    number: int
    consumer: str
    buffer: deque[Msg] = field(default_factory=deque)
    requested: int = 0
    deadline: float = 0.0
    active: bool = True
    touched: float = field(default_factory=time.monotonic)
    hold_upto: int = 0
    """While records are pending redelivery: the highest stream sequence delivered before; later ones wait."""
    awaiting: int = 0
    """Records at or below ``hold_upto`` still to come back."""
    hold_until: float = 0.0
    """Monotonic time when the hold ends even if some never came back (acknowledged, or retried far ahead)."""

    def holding(self, now: float) -> bool:
        """Whether later records must still wait for earlier ones pending redelivery."""
        return self.hold_upto > 0 and self.awaiting > 0 and now < self.hold_until


def _ack_fields(msg: Msg) -> tuple[int, int, int]:
    """(times delivered, stream sequence, stored-at ns) of a JetStream delivery, from its ack subject.

    ``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ns>.<pending>``, or with
    ``<domain>.<account hash>`` after ``ACK`` and a random token at the end (server 2.9+). Cheaper than
    nats-py's ``Msg.metadata``, which builds a datetime per message.
    """
    tokens = msg.reply.split(".")
    base = 4 if len(tokens) == 9 else 6
    return int(tokens[base]), int(tokens[base + 1]), int(tokens[base + 3])


def _sequence(msg: Msg) -> int:
    return _ack_fields(msg)[1]


def _partition_of(msg: Msg) -> int:
    """The partition of a delivery, from its subject: ``<prefix>.<topic>.<p>[.r.<group>]`` (no dots inside names)."""
    try:
        return int(msg.subject.split(".", 3)[2])
    except (ValueError, IndexError):
        return -1


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.debug("fire-and-forget NATS publish failed: %r", task.exception())
