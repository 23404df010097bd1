"""A worker process for the crash tests: copies t.crash.in to t.crash.out, logging each invocation.

Usage: python -m tests.integration.crash_worker BROKER_URL INVOCATION_LOG
"""

from __future__ import annotations

import asyncio
import os
import sys

from choreograph import App, ConsumerConfig, Context, Event


class Item(Event, type="t.crash.in"):
    n: int


class Copied(Event, type="t.crash.out"):
    n: int


def build(url: str, log_path: str) -> App:
    app = App("crash", broker=url, consumer=ConsumerConfig(batch_size=50, fetch_timeout=0.05))
    log = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process

    @app.service("copier").on(Item, concurrency=4)
    async def copy(event: Item, ctx: Context) -> Copied:
        # One line per invocation, flushed, so the parent can count re-invocations after kill -9.
        log.write(f"{ctx.envelope.id} {os.getpid()} {ctx.delivery.partition}\n")
        await asyncio.sleep(0.001)  # some work, so a kill lands mid-batch
        return Copied(n=event.n)

    return app


if __name__ == "__main__":
    asyncio.run(build(sys.argv[1], sys.argv[2]).run())
