"""Partition leases of Redis group members, renewed off the event loop and checked before use.

A member holds each of its partitions under a lease token (see
``scripts.HEARTBEAT``). Two things keep a member from acting on a partition
it lost:

* renewal does not depend on the event loop: one thread per broker
  heartbeats every member (:class:`Keepalive`), so a handler that blocks the
  loop does not let the leases lapse; only a process that stops altogether
  (crash, kill -9, freeze) or loses Redis for ``lease_timeout`` loses them;
* use is fenced: every settle carries the tokens of the partitions it
  touches, and its scripts check them atomically with the writes
  (``scripts.fenced``); locally, a member whose renewals stopped, or whose
  renewal found a partition gone, refuses to fetch or settle
  (:meth:`LeaseState.check`) and raises :class:`LeaseLost`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from choreograph.core.errors import LeaseLost
from choreograph.core.keepalive import MemberThread

from . import scripts
from .config import RedisConfig
from .connection import client_options

log = logging.getLogger(__name__)


@dataclass(eq=False, slots=True)
class LeaseState:
    """What one member holds, shared by the event loop and the keepalive thread (under ``lock``).

    ``tokens`` is written by the loop when it rebalances; ``valid_until``
    (monotonic seconds: the send time of the last successful heartbeat plus
    ``lease_timeout``) and ``seen_generation`` by whichever side heartbeats;
    ``lost`` once, by whoever finds a partition gone.
    """

    member: str
    keys: list[str]
    """The group's members, leases and generation keys (arguments of ``scripts.HEARTBEAT``)."""
    partitions: int
    lease_timeout: float
    tokens: dict[int, str] = field(default_factory=dict)
    valid_until: float = 0.0
    seen_generation: int = -1
    lost: str | None = None
    changes: int = 0
    """Bumped by the loop before and after a rebalance: a thread heartbeat sent meanwhile is not judged."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def arguments(self, rebalance: bool) -> list[Any]:
        """ARGV of ``scripts.HEARTBEAT`` for this member now."""
        now_ms = int(time.time() * 1000)
        return [self.member, self.partitions, now_ms, int(self.lease_timeout * 1000), "1" if rebalance else "0"]

    def begin_change(self) -> None:
        """The loop is about to rebalance: renewals in flight from the thread must not judge the tokens.

        Always paired with :meth:`end_change` (in a ``finally``).
        """
        with self.lock:
            self.changes += 1

    def adopt(self, sent_at: float, answer: Sequence[Any]) -> dict[int, str]:
        """Take a rebalancing heartbeat's answer as the new holdings (loop side); return them."""
        generation, held = _parse(answer)
        with self.lock:
            self.tokens = held
            self.seen_generation = generation
            self.valid_until = sent_at + self.lease_timeout
        return held

    def end_change(self) -> None:
        """The loop's rebalance ended (adopted or failed): the thread judges its renewals again."""
        with self.lock:
            self.changes += 1

    def renewed(self, changes: int, sent_at: float, answer: Sequence[Any]) -> None:
        """Judge a renewal's answer (thread side): extend the lease, or record that a partition was lost."""
        generation, held = _parse(answer)
        with self.lock:
            if changes != self.changes or self.lost is not None:
                return  # a rebalance ran meanwhile: its own heartbeat tells
            self.seen_generation = generation
            gone = sorted(p for p, token in self.tokens.items() if held.get(p) != token)
            if gone:
                self.lost = f"its leases of partitions {gone} lapsed and were not renewed in time"
            else:
                self.valid_until = sent_at + self.lease_timeout

    def fence(self, partitions: Sequence[int]) -> dict[int, str]:
        """The tokens a settle of ``partitions`` must present (all held ones if none are named)."""
        with self.lock:
            if not partitions:
                return dict(self.tokens)
            return {p: self.tokens.get(p, "") for p in partitions}

    def check(self, what: str) -> None:
        """Raise LeaseLost if this member lost a partition or cannot be sure it still holds them."""
        if self.lost is None and time.monotonic() >= self.valid_until:
            with self.lock:
                if self.lost is None:
                    self.lost = (
                        "its leases were not renewed within lease_timeout (Redis unreachable or process stalled)"
                    )
        if self.lost is not None:
            raise LeaseLost(f"member {self.member} cannot {what}: {self.lost}; its partitions go to other members")

    def lose(self, reason: str) -> None:
        """Record that a settle was refused by the fence."""
        with self.lock:
            if self.lost is None:
                self.lost = reason


def _parse(answer: Sequence[Any]) -> tuple[int, dict[int, str]]:
    """(generation, {partition: token}) of a HEARTBEAT reply."""
    held = {int(answer[i]): _text(answer[i + 1]) for i in range(1, len(answer) - 1, 2)}
    return int(answer[0]), held


def _text(value: bytes | str | int) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Keepalive(MemberThread[LeaseState]):
    """One thread renewing the leases of every member of one broker, every ``heartbeat_interval``.

    Started by the first :meth:`add`, ended when the last member is
    discarded. It has its own (blocking) connection, so neither a busy loop
    nor the loop's connection pool delays renewals. A failed renewal is
    logged and retried at the next tick; the member's own :meth:`LeaseState.check`
    says when that was too late.
    """

    def __init__(self, url: str, config: RedisConfig) -> None:
        super().__init__("choreograph-redis-keepalive")
        self._url = url
        self._config = config

    def run(self, wake: threading.Event) -> None:
        config = self._config
        client = redis.Redis.from_url(
            self._url,
            **client_options(self._url, config),  # the same credentials and TLS as the broker's client
            socket_connect_timeout=config.connect_timeout,
            socket_timeout=max(0.1, config.lease_timeout / 3),
        )
        heartbeat = client.register_script(scripts.HEARTBEAT)
        try:
            while True:
                # a member's join heartbeated just now: the first renewal is one interval later
                wake.wait(config.effective_heartbeat_interval)
                wake.clear()  # set by a discard that may have been followed by an add: not a stop by itself
                members = self.members()
                if members is None:
                    return
                for lease in members:
                    self._renew(heartbeat, lease)
        finally:
            client.close()

    def _renew(self, heartbeat: Any, lease: LeaseState) -> None:
        with lease.lock:
            changes = lease.changes
            if lease.lost is not None or changes % 2:
                return
        sent_at = time.monotonic()
        try:
            answer = heartbeat(keys=lease.keys, args=lease.arguments(rebalance=False))
        except (redis.RedisError, OSError) as exc:
            if self.may_warn():
                log.warning("redis broker: renewing the leases of member %s failed: %s", lease.member, exc)
            return
        lease.renewed(changes, sent_at, answer)
