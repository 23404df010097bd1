"""Cost of signed events and of encrypted payloads, end to end, as ratios to the same pipeline without them.

Each round publishes N events through ``App.publish_many`` (schema check,
envelope, seal, encode, the memory broker's publish) and handles them all
through a handler's consumer pipeline (``Consumer.handle_batch``: decode,
open, inbox, policy, validation, the handler, one output sealed and encoded,
the settlement) — with no security, with signing and verification on
(Ed25519, one signature per published batch and per handled batch, keyed
output ids), and with encryption on (AES-256-GCM, a data key per customer:
one sensitive field of the input, the whole output). Best of several rounds,
orders alternated. Run by ``python -m bench`` or
``python -m bench.security_bench [--quick]``; the last line is the JSON list of records.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import time
from typing import Annotated

from bench.calibration import peak_rss_mb
from choreograph import App, Context, Event
from choreograph.brokers.memory import MemoryBroker
from choreograph.core.broker import Delivery
from choreograph.runtime.consumer import HandlerStats
from choreograph.security import Encryption, KeyRing, MemoryKeyStore, Security, Sensitive, new_key

CUSTOMERS = 100


class Placed(Event, type="bench.sec.placed"):
    order_id: str
    customer: str
    card: Annotated[str, Sensitive()]
    total_cents: int


class Reserved(Event, type="bench.sec.reserved"):
    order_id: str
    total_cents: int


def security_for(mode: str) -> Security | None:
    if mode == "signing":
        return Security(keys=KeyRing([new_key("bench"), new_key("inventory")]))
    if mode == "encryption":
        return Security(encryption=Encryption.of(MemoryKeyStore(), [Placed, Reserved]))
    return None


def build_app(mode: str) -> App:
    app = App("bench", broker=MemoryBroker(partitions=1), security=security_for(mode))

    @app.service("inventory").on(Placed)
    async def reserve(event: Placed, ctx: Context) -> Reserved:
        return Reserved(order_id=event.order_id, total_cents=event.total_cents)

    return app


async def run(app: App, count: int, batch_size: int = 500) -> float:
    """Publish ``count`` events and handle them; return the seconds both took (reading back excluded)."""
    spec = app.handlers[0]
    consumer = app.pipeline_for(spec)
    subscription = await app.broker.subscribe(spec.topic, spec.group)
    events = [
        (
            Placed(order_id=str(i), customer=f"c{i % CUSTOMERS}", card="4111111111111111", total_cents=i),
            f"c{i % CUSTOMERS}",
        )
        for i in range(count)
    ]
    elapsed = 0.0
    for at in range(0, count, batch_size):
        started = time.perf_counter()
        await app.publish_many(events[at : at + batch_size])
        elapsed += time.perf_counter() - started
    records = await app.broker.read(spec.topic, limit=count * 2)  # type: ignore[attr-defined]
    records = records[-count:]
    deliveries = [Delivery(topic=spec.topic, partition=0, offset=r.offset, value=r.value, key=r.key) for r in records]
    started = time.perf_counter()
    for at in range(0, count, batch_size):
        await consumer.handle_batch(subscription, deliveries[at : at + batch_size], HandlerStats())
    elapsed += time.perf_counter() - started
    await subscription.close()
    return elapsed


async def main(count: int, rounds: int = 7) -> list[dict[str, object]]:
    modes = ("plain", "signing", "encryption")
    apps = {mode: build_app(mode) for mode in modes}
    best = dict.fromkeys(modes, float("inf"))
    for round_ in range(rounds):  # rotate the order so no mode always runs first
        for mode in modes[round_ % 3 :] + modes[: round_ % 3]:
            gc.collect()
            best[mode] = min(best[mode], await run(apps[mode], count))
    plain = best["plain"]
    print(f"events: {count}, best of {rounds} rounds (publish + handle, one output each)")
    for mode in modes:
        print(f"{mode:>10}: {best[mode] / count * 1e6:7.2f} us/event  ratio {plain / best[mode]:.3f}")
    return [
        {
            "backend": "memory",
            "workload": f"security-{mode}",
            "events_per_s": round(count / best[mode]),
            "p50_ms": None,
            "p99_ms": None,
            "peak_rss_mb": peak_rss_mb(),
            "reference": "pipeline-without-security",
            "reference_events_per_s": round(count / plain),
            "ratio": round(plain / best[mode], 3),
        }
        for mode in ("signing", "encryption")
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a quarter of the events")
    parser.add_argument("--events", type=int, default=10_000)
    args = parser.parse_args()
    records = asyncio.run(main(args.events // 4 if args.quick else args.events))
    print(json.dumps(records))
