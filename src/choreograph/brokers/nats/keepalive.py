"""Lease renewal off the event loop: one thread per NATS broker, with its own loop and connection.

A member's leases expire ``lease_timeout`` after their last renewal. Renewed
from the member's event loop, they lapse whenever a handler blocks that loop
for longer, and the member's settle is then refused (fencing): a handler that
always blocks that long would be re-run forever. So renewals run here, in a
thread whose loop nothing else uses, like the SQLite and Redis brokers'
keepalives; only a process that stops altogether loses its leases.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from choreograph.core.keepalive import MemberThread

from .config import NatsConfig
from .connect import connect
from .leases import Leases

log = logging.getLogger("choreograph.brokers.nats")

_POLL = 0.05
"""Seconds between checks for a wake-up while waiting for the next round."""


class Keepalive(MemberThread[Leases]):
    """Renews the leases of every member of one broker every ``heartbeat_interval``.

    Started by the first :meth:`add`, ended when the last member is
    discarded. A failed round is logged (at most once a minute) and retried
    at the next; the fence (``Leases.confirm``) tells a member when that was
    too late.
    """

    def __init__(self, config: NatsConfig) -> None:
        super().__init__("choreograph-nats-keepalive")
        self._config = config

    def add(self, member: Leases) -> None:
        """Renew ``member``'s leases from now on (the loop stops renewing them itself)."""
        member.kept_alive = True
        super().add(member)

    def run(self, wake: threading.Event) -> None:
        asyncio.run(self._main(wake))

    async def _main(self, wake: threading.Event) -> None:
        config = self._config
        nc: Any = None
        try:
            while True:
                # a member's join renewed just now: the first renewal is one interval later
                deadline = time.monotonic() + config.heartbeat_interval
                while not wake.is_set() and time.monotonic() < deadline:
                    await asyncio.sleep(_POLL)
                wake.clear()  # set by a discard that may have been followed by an add: not a stop by itself
                members = self.members()
                if members is None:
                    return
                try:
                    if nc is None or nc.is_closed:
                        nc = await self._connect()
                    js = nc.jetstream(timeout=config.request_timeout)
                    for leases in members:
                        await leases.keep(js)
                except Exception as exc:  # any failure: log it, the next round tries again
                    self._warn(exc)
        finally:
            if nc is not None:
                await nc.close()

    async def _connect(self) -> Any:
        # the broker's own connect: the same credentials and TLS, refusals named, fail fast then reconnect
        return await connect(self._config)

    def _warn(self, exc: BaseException) -> None:
        if self.may_warn():
            log.warning("renewing partition leases failed (retrying every %.1fs): %s", self._config.heartbeat_interval,
                        f"{type(exc).__name__}: {exc}")  # fmt: skip
