"""SQLite backend benchmarks, each beside a raw sqlite3 script doing the same log work.

Run through ``python -m bench`` (``make bench``). Every workload uses the
reference ~300-byte envelope; ratios compare numbers measured in the same run.
"""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.calibration import peak_rss_mb
from choreograph import App, ConsumerConfig, Context, Envelope, Event, Record, encode
from choreograph.brokers.sqlite import SqliteBroker
from choreograph.core import codec
from choreograph.core.broker import Position, Settlement

TOPIC = "bench.order.placed"


class OrderPlaced(Event, type="bench.order.placed"):
    order_id: str
    customer: str
    total_cents: int
    note: str
    sent_at: float = 0.0


def records(n: int, start: int = 0, sent_at: float = 0.0) -> list[Record]:
    out = []
    for i in range(start, start + n):
        key = f"order-{i % 1000:06d}"
        env = Envelope.for_event(
            OrderPlaced(order_id=key, customer="customer-42", total_cents=i, note="x" * 64, sent_at=sent_at),
            source="bench",
            key=key,
        )
        out.append(Record(encode(env), key))
    return out


def record(
    workload: str,
    events_per_s: float,
    reference: str,
    reference_events_per_s: float | None,
    p50_ms: float | None = None,
    p99_ms: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "backend": "sqlite",
        "workload": workload,
        "events_per_s": round(events_per_s),
        "p50_ms": p50_ms,
        "p99_ms": p99_ms,
        "peak_rss_mb": peak_rss_mb(),
        "reference": reference,
        "reference_events_per_s": round(reference_events_per_s) if reference_events_per_s else None,
        "ratio": round(events_per_s / reference_events_per_s, 3) if reference_events_per_s else None,
        **extra,
    }


# -- raw sqlite3: the ceiling -------------------------------------------------


class RawLog:
    """The same log work with plain sqlite3: partitioned append, offsets, inbox."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(
            """
            CREATE TABLE log (p INTEGER, o INTEGER, k TEXT, v BLOB, ts REAL, PRIMARY KEY (p, o)) WITHOUT ROWID;
            CREATE TABLE offsets (g TEXT, p INTEGER, o INTEGER, PRIMARY KEY (g, p)) WITHOUT ROWID;
            CREATE TABLE inbox (g TEXT, k TEXT, ts REAL, PRIMARY KEY (g, k)) WITHOUT ROWID;
            """
        )
        self.next = [0] * 8

    def append(self, batch: list[Record]) -> None:
        now = time.time()
        rows = []
        for rec in batch:
            p = hash(rec.key) % 8
            rows.append((p, self.next[p], rec.key, rec.value, now))
            self.next[p] += 1
        self.db.execute("BEGIN IMMEDIATE")
        self.db.executemany("INSERT INTO log VALUES (?, ?, ?, ?, ?)", rows)
        self.db.execute("COMMIT")

    def consume_all(self, group: str, total: int, batch: int = 500) -> int:
        done = 0
        positions = [0] * 8
        while done < total:
            for p in range(8):
                rows = self.db.execute(
                    "SELECT o, v FROM log WHERE p = ? AND o >= ? ORDER BY o LIMIT ?", (p, positions[p], batch)
                ).fetchall()
                if not rows:
                    continue
                keys = []
                for _, value in rows:
                    doc = orjson.loads(value)
                    keys.append(f"{doc['source']}\x1f{doc['id']}")
                marks = ",".join("?" * len(keys))
                self.db.execute(f"SELECT k FROM inbox WHERE g = ? AND k IN ({marks})", (group, *keys)).fetchall()
                now = time.time()
                self.db.execute("BEGIN IMMEDIATE")
                self.db.executemany("INSERT INTO inbox VALUES (?, ?, ?)", [(group, k, now) for k in keys])
                self.db.execute("INSERT OR REPLACE INTO offsets VALUES (?, ?, ?)", (group, p, rows[-1][0] + 1))
                self.db.execute("COMMIT")
                positions[p] = rows[-1][0] + 1
                done += len(rows)
        return done

    def replay(self) -> int:
        n = 0
        for p in range(8):
            last = -1
            while True:
                rows = self.db.execute(
                    "SELECT o, v FROM log WHERE p = ? AND o > ? ORDER BY o LIMIT 5000", (p, last)
                ).fetchall()
                if not rows:
                    break
                for _, value in rows:
                    orjson.loads(value)
                n += len(rows)
                last = rows[-1][0]
        return n


def raw_numbers(workdir: Path, batches: list[list[Record]], singles: list[Record]) -> dict[str, float]:
    raw = RawLog(workdir / "raw.db")
    total = sum(map(len, batches))
    started = time.perf_counter()
    for batch in batches:
        raw.append(batch)
    publish_batched = total / (time.perf_counter() - started)
    started = time.perf_counter()
    for rec in singles:
        raw.append([rec])
    publish_single = len(singles) / (time.perf_counter() - started)
    started = time.perf_counter()
    consumed = raw.consume_all("g", total + len(singles))
    end_to_end = consumed / (time.perf_counter() - started)
    started = time.perf_counter()
    replayed = raw.replay()
    replay = replayed / (time.perf_counter() - started)
    # End to end includes the publish: combine the two stages as one pipeline would.
    end_to_end = 1 / (1 / publish_batched + 1 / end_to_end)
    return {
        "publish-batched": publish_batched,
        "publish-single": publish_single,
        "end-to-end": end_to_end,
        "replay": replay,
    }


# -- choreograph ----------------------------------------------------------------


async def publish_batched(broker: SqliteBroker, batches: list[list[Record]]) -> float:
    started = time.perf_counter()
    for batch in batches:
        await broker.publish(TOPIC, batch)
    return sum(map(len, batches)) / (time.perf_counter() - started)


async def publish_single(broker: SqliteBroker, singles: list[Record]) -> float:
    started = time.perf_counter()
    for rec in singles:
        await broker.publish(TOPIC + ".single", [rec])
    return len(singles) / (time.perf_counter() - started)


async def publish_concurrent(broker: SqliteBroker, singles: list[Record], tasks: int = 64) -> float:
    chunks = [singles[i::tasks] for i in range(tasks)]

    async def one(chunk: list[Record]) -> None:
        for rec in chunk:
            await broker.publish(TOPIC + ".concurrent", [rec])

    started = time.perf_counter()
    await asyncio.gather(*(one(c) for c in chunks))
    return len(singles) / (time.perf_counter() - started)


async def end_to_end(url: str, total: int) -> float:
    """Publish in batches while the runtime consumes, dedupe and validation on."""
    app = App("bench", broker=url, consumer=ConsumerConfig(batch_size=1000, fetch_timeout=0.05))
    done = asyncio.Event()
    handled = 0

    @app.service("bench").on(OrderPlaced)
    async def handle(event: OrderPlaced, ctx: Context) -> None:
        nonlocal handled
        handled += 1
        if handled >= total:
            done.set()

    payload = records(total)
    started = time.perf_counter()
    await app.start()
    for i in range(0, total, 1000):
        await app.broker.publish(TOPIC, payload[i : i + 1000])
    await asyncio.wait_for(done.wait(), 300)
    rate = total / (time.perf_counter() - started)
    await app.close()
    return rate


async def latency(url: str, rate: int, seconds: float) -> tuple[float, float, float, float]:
    """Open loop: event i is due at t0 + i/rate; latency counts from that intended send time.

    The records are encoded before the clock starts (each carries its offset
    from t0), so the load generator costs little of the measured process.
    """
    app = App("bench", broker=url, consumer=ConsumerConfig(batch_size=1000, fetch_timeout=0.05))
    total = int(rate * seconds)
    samples: list[float] = []
    done = asyncio.Event()
    t0 = 0.0

    @app.service("lat").on(OrderPlaced, name=f"latency-{rate}")
    async def handle(event: OrderPlaced, ctx: Context) -> None:
        samples.append((time.time() - (t0 + event.sent_at)) * 1000)
        if len(samples) >= total:
            done.set()

    topic = OrderPlaced.topic()
    prepared = []
    for i in range(total):
        key = f"order-{i % 1000:06d}"
        event = OrderPlaced(order_id=key, customer="c", total_cents=i, note="x" * 64, sent_at=i / rate)
        prepared.append(Record(encode(Envelope.for_event(event, source="bench", key=key)), key))
    await app.start()
    # The prepared load is the generator's, not the system's: keep the cyclic GC
    # from rescanning it (a full collection over it pauses the loop for tens of ms).
    gc.collect()
    gc.freeze()
    t0 = time.time() + 0.2
    sent = 0
    while sent < total:
        now = time.time()
        due = min(total, int((now - t0) * rate) + 1) if now >= t0 else 0
        if due > sent:
            await app.broker.publish(topic, prepared[sent:due])
            sent = due
        else:
            await asyncio.sleep(max(0.0, t0 + sent / rate - time.time()))
    await asyncio.wait_for(done.wait(), 120)
    gc.unfreeze()
    await app.close()
    q = statistics.quantiles(samples, n=1000, method="inclusive")
    return total / seconds, q[499], q[989], q[998]


async def replay(broker: SqliteBroker, total: int, *, full_decode: bool = False) -> float:
    """A brand-new group reads the whole topic from the start: fetch, parse, settle.

    ``full_decode`` builds and checks each Envelope (what a handler needs);
    otherwise each record is parsed with orjson, the same work as the raw script.
    """
    group = "bench.replay-decoded" if full_decode else "bench.replay"
    parse = codec.decode if full_decode else orjson.loads
    sub = await broker.subscribe(TOPIC, group, start=Position.earliest())
    seen = 0
    started = time.perf_counter()
    settling: asyncio.Task[None] | None = None
    while seen < total:
        # The next fetch (reader thread) overlaps with the previous settle (writer thread).
        batch = await sub.fetch(5000, 1.0)
        if settling is not None:
            await settling
        if not batch:
            break
        for delivery in batch:
            parse(delivery.value)
        settling = asyncio.create_task(sub.settle(Settlement(acks=list(batch))))
        seen += len(batch)
    if settling is not None:
        await settling
    rate = seen / (time.perf_counter() - started)
    await sub.close()
    return rate


async def run(quick: bool = False) -> list[dict[str, Any]]:
    scale = 5 if quick else 1
    total = 100_000 // scale
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        workdir = Path(tmp)
        batches = [records(1000, start=i * 1000) for i in range(total // 1000)]
        singles = records(5000 // scale, start=total)
        raw = raw_numbers(workdir, batches, singles)

        url = f"sqlite:///{workdir}/bench.db"
        broker = SqliteBroker.from_url(url)
        batched = await publish_batched(broker, batches)
        single = await publish_single(broker, singles)
        concurrent = await publish_concurrent(broker, records(10_000 // scale, start=total * 2))
        replayed = await replay(broker, total)
        replayed_decoded = await replay(broker, total, full_decode=True)
        await broker.close()

        e2e = await end_to_end(f"sqlite:///{workdir}/e2e.db", 50_000 // scale)
        lat_1k = await latency(f"sqlite:///{workdir}/lat1k.db", 1000, 5.0 / scale)
        lat_10k = await latency(f"sqlite:///{workdir}/lat10k.db", 10_000, 3.0 / scale)

    return [
        record("publish-batched", batched, "raw-sqlite3", raw["publish-batched"]),
        record("publish-single", single, "raw-sqlite3", raw["publish-single"]),
        record("publish-concurrent-64", concurrent, "raw-sqlite3-single", raw["publish-single"]),
        record("end-to-end", e2e, "raw-sqlite3", raw["end-to-end"]),
        record(
            "latency-1k",
            lat_1k[0],
            "offered",
            1000,
            p50_ms=round(lat_1k[1], 2),
            p99_ms=round(lat_1k[2], 2),
            p999_ms=round(lat_1k[3], 2),
        ),
        record(
            "latency-10k",
            lat_10k[0],
            "offered",
            10_000,
            p50_ms=round(lat_10k[1], 2),
            p99_ms=round(lat_10k[2], 2),
            p999_ms=round(lat_10k[3], 2),
        ),
        record("replay", replayed, "raw-sqlite3", raw["replay"]),
        record("replay-envelopes", replayed_decoded, "raw-sqlite3", raw["replay"]),
    ]
