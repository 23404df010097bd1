"""Section A, hostile input: records no handler can take, among good ones, through the runtime's own consumer.

The scenario publishes good events of several keys and, between them, every
kind of bad record a topic can hold — bytes that are not UTF-8, malformed
JSON, an envelope missing attributes, headers that claim a binary-mode event
the body is not, a record too big to decode (and whose dead letter is far over
1 MB in base64), an impossible ``schemaversion``, a payload that does not fit
the handler's model, an event of a foreign type — and, through the backend's
:meth:`HostileScenarios.inject_raw` hook, native records no publish could
produce (a key or header that is not UTF-8, forged transport headers, an id the
backend never assigned). The runtime's consumer read/handle path
(:meth:`choreograph.runtime.consumer.Consumer.handle_batch`) decides, the
harness fetches and settles, and the history checker proves: every good record
handled once, in per-key order; every bad one dead-lettered with a reason and
an error message; the foreign type acknowledged, never handled nor
dead-lettered; nothing left unsettled, nothing stuck behind a bad record.
"""

from __future__ import annotations

import asyncio
import json
from typing import ClassVar, Final

from choreograph.core.broker import Broker, DeadLetterStore, Record
from choreograph.core.event import Event
from choreograph.runtime.app import App
from choreograph.runtime.consumer import ConsumerConfig, HandlerStats
from choreograph.runtime.context import Context
from choreograph.testing.checker import check
from choreograph.testing.history import ACK, DEAD_LETTER, HANDLE, MESSAGE_ID_HEADER, PUBLISH, Recorder
from choreograph.testing.scenario import ConformanceBase, scenario

KEYS: Final = ("hk-0", "hk-1", "hk-2")
OTHER_TYPE: Final = "conformance.hostile.other"


class HostileOrder(Event, type="conformance.hostile.order", version=1):
    """The one event type the scenario's handler takes."""

    key: str
    seq: int


def envelope(event_id: str, key: str, data: object, *, event_type: str | None = None, version: object = 1) -> bytes:
    """A structured CloudEvents record as another producer would write it."""
    doc = {
        "specversion": "1.0",
        "id": event_id,
        "source": "conformance/hostile",
        "type": event_type or HostileOrder.event_type(),
        "partitionkey": key,
        "schemaversion": version,
        "data": data,
    }
    return json.dumps(doc, ensure_ascii=False).encode()


class HostileScenarios(ConformanceBase):
    """Scenario A17."""

    hostile_large_size: ClassVar[int] = 900_000
    """Bytes of the big bad record: its dead letter in base64 is over 1 MB; under each test server's limit."""
    hostile_oversize: ClassVar[int | None] = 1_200_000
    """Bytes of a well-formed event over the consumer's 1 MB decode limit; None where the broker refuses it."""

    async def inject_raw(self, broker: Broker, topic: str, key: str, marker: str) -> list[str]:
        """Write native records no publish could produce into the partition of ``key`` of ``topic``.

        For a backend whose storage can hold what its publish never writes (a
        key or header that is not UTF-8, forged transport headers, foreign
        ids). Each value should contain ``marker``. Return the harness message
        ids (:func:`~choreograph.testing.history.message_id`) their deliveries
        will have. The default writes nothing: the memory broker has no native form.
        """
        return []

    @scenario(
        "A17",
        "Hostile records among good ones: each bad one dead-lettered with a reason, foreign types skipped, "
        "good ones handled once in per-key order, nothing stuck",
    )
    async def test_a17_hostile_records_are_dead_lettered_and_nothing_stops(self) -> None:
        topic, _ = self.names("a17")
        rec = Recorder()
        good: list[str] = []
        bad: list[str] = []
        skipped: list[str] = []
        handled: list[tuple[str, int]] = []

        def mark(name: str, value: bytes, key: str | None, headers: dict[str, str] | None = None) -> Record:
            return Record(value, key=key, headers={**(headers or {}), MESSAGE_ID_HEADER: name})

        def hostile(n: int, key: str) -> list[tuple[str, Record]]:
            """The bad records of round ``n`` (foreign type last: it is skipped, not dead-lettered)."""
            big = bytes(range(256)) * (self.hostile_large_size // 256)
            return [
                ("not-utf8", mark(f"bad-{n}-not-utf8", b"\xff\xfe\xfd" + bytes(range(128, 160)), key)),
                ("bad-json", mark(f"bad-{n}-bad-json", b'{"specversion": "1.0", "id": ', key)),
                ("no-type", mark(f"bad-{n}-no-type", b'{"specversion": "1.0", "source": "s", "id": "%d"}' % n, key)),
                ("binary-lie", mark(f"bad-{n}-binary-lie", b"plain text", key,
                                    {"ce-specversion": "1.0", "ce-type": HostileOrder.event_type(), "ce-id": f"b{n}"})),
                ("big", mark(f"bad-{n}-big", big, key)),
                ("version", mark(f"bad-{n}-version", envelope(f"v{n}", key, {"key": key, "seq": -1}, version="\u00b9"),
                                 key)),
                ("huge-version", mark(f"bad-{n}-huge-version",
                                      envelope(f"h{n}", key, {"key": key, "seq": -1}, version="9" * 5000), key)),
                ("schema", mark(f"bad-{n}-schema", envelope(f"s{n}", key, {"key": 1, "seq": "x"}), key)),
                ("other", mark(f"other-{n}", envelope(f"o{n}", key, {"key": key, "seq": -1}, event_type=OTHER_TYPE),
                               key)),
            ]  # fmt: skip

        async with self.broker() as broker:
            app = App("conformance", broker=broker, consumer=ConsumerConfig(batch_size=20))

            @app.service("hostile").on(HostileOrder, timeout=None)
            async def take(event: HostileOrder, ctx: Context) -> None:
                handled.append((event.key, event.seq))
                rec.history.handled(group, "runtime", ctx.delivery)

            (spec,) = app.handlers
            group = spec.group
            await app.check_schemas()
            consumer = app.pipeline_for(spec)
            seq = 0
            for n in range(3):
                for key in KEYS:
                    seq += 1
                    name = f"good-{n}-{key}"
                    await rec.publish(broker, topic, [mark(name, envelope(name, key, {"key": key, "seq": seq}), key)])
                    good.append(name)
                for kind, record in hostile(n, KEYS[n]):
                    if kind == "big" and n > 0:
                        continue  # one oversized record is enough
                    await rec.publish(broker, topic, [record])
                    (skipped if kind == "other" else bad).append(record.headers[MESSAGE_ID_HEADER])
                if n == 1 and self.hostile_oversize is not None:  # our type, well formed, too big to decode
                    pad = "x" * self.hostile_oversize
                    name = "bad-oversize"
                    data = {"key": KEYS[n], "seq": -1, "pad": pad}
                    await rec.publish(broker, topic, [mark(name, envelope(name, KEYS[n], data), KEYS[n])])
                    bad.append(name)
                for name in await self.inject_raw(broker, topic, KEYS[n], f"native-{n}"):
                    rec.history.add(PUBLISH, name, topic)  # no key: the checker claims no order for them
                    bad.append(name)

            sub = await rec.subscribe(broker, topic, group)
            everything = {*good, *bad, *skipped}
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.timeout * 3
            tally = HandlerStats()
            while not everything <= rec.history.finished(group, topic) and loop.time() < deadline:
                batch = await sub.fetch(20, 0.2)
                if batch:
                    await sub.settle(await consumer.handle_batch(sub, batch, tally))
            await sub.close()

            events = rec.history.events
            finished = rec.history.finished(group, topic)
            assert everything <= finished, f"never settled: {sorted(everything - finished)}"
            check(rec.history, group=group, topic=topic).assert_ok(self.forbid(ordered=True, exact=True))
            assert sorted(e.message for e in events if e.kind == HANDLE) == sorted(good), "handled other than good"
            dead = [e.message for e in events if e.kind == DEAD_LETTER]
            assert sorted(dead) == sorted(bad), f"dead-lettered {sorted(dead)}, bad {sorted(bad)}"
            acked = {e.message for e in events if e.kind == ACK}
            assert set(skipped) <= acked, "a foreign type was not acknowledged"
            for key in KEYS:
                seqs = [s for k, s in handled if k == key]
                assert seqs == sorted(seqs), f"key {key}: handled out of order {seqs}"
            assert tally.skipped == len(skipped)
            assert tally.dead_letters == len(bad)
            if isinstance(broker, DeadLetterStore):
                letters = [d for d in await broker.dead_letters(group=group, limit=1000) if d.topic == topic]
                assert len(letters) == len(bad)
                assert all(d.reason and d.error_message for d in letters), "a dead letter without a reason"
                sizes = {len(d.value) for d in letters}
                assert len(bytes(range(256)) * (self.hostile_large_size // 256)) in sizes, "oversized letter cut"
