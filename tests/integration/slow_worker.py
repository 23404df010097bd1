"""An App whose handler takes a while, for the graceful-shutdown test.

Run as ``choreograph run tests.integration.slow_worker:app``; writes
``started``/``finished`` lines to the file named by $SLOW_WORKER_LOG.
"""

from __future__ import annotations

import asyncio
import os

from choreograph import App, Context, Event


class Job(Event, type="t.slow.job"):
    n: int


app = App("slow")


@app.service("worker").on(Job)
async def work(event: Job, ctx: Context) -> None:
    with open(os.environ["SLOW_WORKER_LOG"], "a", buffering=1) as log:
        log.write(f"started {event.n}\n")
        await asyncio.sleep(0.5)
        log.write(f"finished {event.n}\n")
