"""A chaos worker: handles t.chaos.in, writes each invocation to an external ledger, emits t.chaos.out.

Usage: python -m tests.chaos.worker LEDGER   (the broker URL comes from $CHOREOGRAPH_BROKER)
With $CHOREOGRAPH_CHAOS_LOGS set (a directory), the harness sends each worker's log to a file there.

The ledger stands for a side effect outside the broker (a payment, an e-mail): one
line per handler invocation, flushed before the handler returns, so a kill -9 after
the side effect and before the settle shows up as a duplicate side effect.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time

from choreograph import App, ConsumerConfig, Context, Event


class Step(Event, type="t.chaos.in"):
    key: str
    seq: int


class Done(Event, type="t.chaos.out"):
    key: str
    seq: int


def build(ledger_path: str) -> App:
    app = App("chaos", consumer=ConsumerConfig(batch_size=50, fetch_timeout=0.05))
    ledger = open(ledger_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    pid = os.getpid()

    @app.service("chaos").on(Step, concurrency=8)
    async def step(event: Step, ctx: Context) -> Done:
        ledger.write(f"{ctx.envelope.id} {event.key} {event.seq} {pid} {time.time():.6f}\n")
        await asyncio.sleep(0.002)  # some work, so a kill lands mid-batch
        return Done(key=event.key, seq=event.seq)

    return app


if __name__ == "__main__":
    if os.environ.get("CHOREOGRAPH_CHAOS_LOGS"):  # stderr goes to a file of that directory (see harness.py)
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
        logging.getLogger("choreograph.brokers.nats").setLevel(logging.DEBUG)
    asyncio.run(build(sys.argv[1]).run())
