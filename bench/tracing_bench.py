"""Cost of the tracing middleware with no OpenTelemetry SDK configured.

Runs N encoded events through a handler's consumer pipeline
(``Consumer.handle_batch``: decode, inbox dedupe, failure policy, timeout,
validation, the handler, one emitted event, the settlement) with and without
:func:`choreograph.observe.tracing.install_tracing`, best of several rounds,
and prints the ratio. Run by ``python -m bench`` or ``python -m bench.tracing_bench [--quick]``;
the last line is the JSON list of records.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import time

from bench.calibration import peak_rss_mb
from choreograph import App, Context, Event, encode
from choreograph.brokers.memory import MemoryBroker
from choreograph.core.broker import Delivery
from choreograph.core.envelope import Envelope
from choreograph.observe.tracing import install_tracing
from choreograph.runtime.consumer import HandlerStats

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Placed(Event, type="bench.placed"):
    order_id: str


class Reserved(Event, type="bench.reserved"):
    order_id: str


def build_app(traced: bool) -> App:
    app = App("bench", broker=MemoryBroker())
    if traced:
        install_tracing(app)  # no SDK configured: the global no-op provider

    @app.service("inventory").on(Placed)
    async def reserve(event: Placed, ctx: Context) -> Reserved:
        return Reserved(order_id=event.order_id)

    return app


async def run(app: App, values: list[bytes], batch_size: int = 500) -> float:
    """Handle every value through the consumer's pipeline (decode, dedupe, policy, handler); return seconds."""
    spec = app.handlers[0]
    consumer = app.pipeline_for(spec)
    subscription = await app.broker.subscribe(spec.topic, spec.group)
    deliveries = [Delivery(topic=spec.topic, partition=0, offset=i, value=v) for i, v in enumerate(values)]
    started = time.perf_counter()
    for i in range(0, len(deliveries), batch_size):
        await consumer.handle_batch(subscription, deliveries[i : i + batch_size], HandlerStats())
    elapsed = time.perf_counter() - started
    await subscription.close()
    return elapsed


async def main(count: int, rounds: int = 5) -> list[dict[str, object]]:
    values = [
        encode(Envelope.for_event(Placed(order_id=str(i)), source="bench").replace(traceparent=TRACEPARENT))
        for i in range(count)
    ]
    plain_app, traced_app = build_app(traced=False), build_app(traced=True)
    plain = traced = float("inf")
    for round_ in range(rounds):  # alternate the order so neither side always runs second
        for traced_first in (False, True) if round_ % 2 else (True, False):
            gc.collect()
            if traced_first:
                traced = min(traced, await run(traced_app, values))
            else:
                plain = min(plain, await run(plain_app, values))
    per_plain, per_traced = plain / count * 1e6, traced / count * 1e6
    print(f"events: {count}, best of {rounds} rounds")
    print(f"pipeline without tracing: {per_plain:.2f} us/event")
    print(f"pipeline with tracing (no SDK): {per_traced:.2f} us/event (+{per_traced - per_plain:.2f} us)")
    print(f"ratio: {traced / plain:.3f}")
    return [
        {
            "backend": "memory",
            "workload": "tracing-overhead-no-sdk",
            "events_per_s": round(count / traced),
            "p50_ms": None,
            "p99_ms": None,
            "peak_rss_mb": peak_rss_mb(),
            "reference": "pipeline-without-tracing",
            "reference_events_per_s": round(count / plain),
            "ratio": round(plain / traced, 3),
        }
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a quarter of the events")
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    records = asyncio.run(main(args.events // 4 if args.quick else args.events))
    print(json.dumps(records))
