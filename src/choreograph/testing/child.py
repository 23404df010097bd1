"""Entry point of the child process that :class:`~choreograph.testing.faults.ChildProcess` starts.

``python -m choreograph.testing.child '<json spec>'`` opens the broker with the
spec's opener and URL, then consumes or publishes, writing every history event
as one JSON line on stdout (flushed), and ``{"ready": true}`` at its kill point.
A holder fetches one batch and holds it; on the line ``settle`` on stdin it
settles the batch (acks, and one output record each) and reports
``{"settled": "applied"}`` or ``{"settled": "refused", "error": ...}``.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import sys
from typing import Any

from choreograph.core.broker import Broker, Record, Settlement
from choreograph.core.errors import BrokerError
from choreograph.testing.consumer import Consumer
from choreograph.testing.faults import AFTER_DELIVERIES, MID_BATCH, READY, SETTLED
from choreograph.testing.history import MESSAGE_ID_HEADER, History, HistoryEvent, Recorder


def _emit(event: HistoryEvent) -> None:
    sys.stdout.write(event.to_json() + "\n")
    sys.stdout.flush()


def _ready() -> None:
    sys.stdout.write(json.dumps({READY: True}) + "\n")
    sys.stdout.flush()


async def open_broker(opener: str, url: str) -> Broker:
    """Resolve ``"module:attr.attr"`` and call it with ``url`` (awaiting the result if needed)."""
    module, _, attrs = opener.partition(":")
    target: Any = importlib.import_module(module)
    for name in attrs.split("."):
        target = getattr(target, name)
    broker = target(url)
    if inspect.isawaitable(broker):
        broker = await broker
    return broker  # type: ignore[no-any-return]


async def _consume(broker: Broker, spec: dict[str, Any], recorder: Recorder) -> None:
    sub = await recorder.subscribe(broker, spec["topic"], spec["group"])
    consumer = Consumer(sub, batch=spec["batch"])
    received, after = 0, int(spec["after"])
    while True:
        batch = await consumer.fetch(timeout=1.0)
        if not batch:
            continue
        if received + len(batch) >= after:
            cut = {AFTER_DELIVERIES: after - received, MID_BATCH: max(1, len(batch) // 2)}.get(
                spec["point"], len(batch)
            )
            for delivery in batch[:cut]:
                recorder.history.handled(sub.group, sub.member, delivery)
            _ready()
            await asyncio.Event().wait()  # stop dead here until killed
        received += len(batch)
        await consumer.process(batch)


async def _hold(broker: Broker, spec: dict[str, Any], recorder: Recorder) -> None:
    sub = await recorder.subscribe(broker, spec["topic"], spec["group"])
    held: list[Any] = []
    while not held:
        held = list(await sub.fetch(spec["batch"], 1.0))
    _ready()
    loop = asyncio.get_running_loop()
    while (await loop.run_in_executor(None, sys.stdin.readline)).strip() != "settle":
        pass
    outputs = [(spec["outputs"], Record(b"output of " + bytes(d.value), key=d.key)) for d in held]
    try:
        await sub.settle(Settlement(acks=held, outputs=outputs))
        outcome: dict[str, Any] = {SETTLED: "applied"}
    except BrokerError as exc:
        outcome = {SETTLED: "refused", "error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(json.dumps(outcome) + "\n")
    sys.stdout.flush()
    await asyncio.Event().wait()  # until killed


async def _publish(broker: Broker, spec: dict[str, Any], recorder: Recorder) -> None:
    i = 0
    while True:
        mid = f"{spec['prefix']}-{i}"
        record = Record(mid.encode(), key=f"k{i % spec['keys']}", headers={MESSAGE_ID_HEADER: mid})
        await recorder.publish(broker, spec["topic"], [record])
        i += 1
        if i == spec["after"]:
            _ready()


async def main(spec: dict[str, Any]) -> None:
    """Run the child described by ``spec``."""
    broker = await open_broker(spec["opener"], spec["url"])
    recorder = Recorder(History(listener=_emit))
    if spec["mode"] == "consume":
        await _consume(broker, spec, recorder)
    elif spec["mode"] == "hold":
        await _hold(broker, spec, recorder)
    else:
        await _publish(broker, spec, recorder)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
