"""Records other Kafka clients wrote: translated to a delivery with ``fault``, never an exception.

The translation is fuzzed without a server; then raw records with a
non-UTF-8 key, a non-UTF-8 header value and a garbage resubmission header
go through a real broker, are dead-lettered, and the group moves past them.
"""

from __future__ import annotations

import time
import uuid

from aiokafka.structs import ConsumerRecord
from hypothesis import given
from hypothesis import strategies as st

from choreograph.brokers.kafka import KafkaBroker
from choreograph.brokers.kafka.broker import RESUBMIT_OFFSET_HEADER, to_delivery
from choreograph.core.broker import DeadLetter, Delivery, Record, Settlement
from choreograph.core.ids import new_id
from tests.fuzz.budget import fuzz_settings

from .server import TansuServer

OPTIONS = "partitions=1&idempotent=false&persistent=false&session_timeout=6&heartbeat_interval=1"

_bytes = st.binary(max_size=24) | st.sampled_from([b"\xff", b"\xc3\x28", b"12", b"-3", b" 7 ", b"x"])
_header_names = st.sampled_from([RESUBMIT_OFFSET_HEADER, "choreograph-resubmitted-for", "h"]) | st.text(max_size=6)


def _record(
    key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes | None]], offset: int
) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord("t", 0, offset, 1_700_000_000_000, 0, key, value, None, 0, 0, headers)


@fuzz_settings(0.05)  # 200 inputs in the normal run; 50,000 under HYPOTHESIS_PROFILE=fuzz
@given(
    key=st.none() | _bytes,
    value=st.none() | _bytes,
    headers=st.lists(st.tuples(_header_names, st.none() | _bytes), max_size=4),
    offset=st.integers(0, 2**40),
)
def test_any_record_translates_to_a_delivery(
    key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes | None]], offset: int
) -> None:
    delivery = to_delivery(_record(key, value, headers, offset))
    assert isinstance(delivery, Delivery)
    assert isinstance(delivery.value, bytes)
    assert delivery.key is None or isinstance(delivery.key, str)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in delivery.headers.items())
    (delivery.key or "").encode()  # storable and printable as UTF-8
    "".join(delivery.headers.values()).encode()
    if delivery.fault is not None:
        assert delivery.fault


def test_well_formed_records_have_no_fault() -> None:
    record = _record(b"k\xc3\xa9", b"v", [("h", "\u2713".encode())], 5)
    assert to_delivery(record) == Delivery("t", 0, 5, b"v", "k\u00e9", {"h": "\u2713"}, 1_700_000_000.0)


def _letter(delivery: Delivery) -> DeadLetter:
    now = time.time()
    return DeadLetter(
        id=new_id(), topic=delivery.topic, group="g", handler="h", partition=delivery.partition,
        offset=delivery.offset, key=delivery.key, value=delivery.value, headers=dict(delivery.headers),
        event_id=None, event_type=None, reason="decode", error_type="", error_message=delivery.fault or "",
        stack="", attempts=delivery.attempt, first_failure=now, last_failure=now,
    )  # fmt: skip


async def test_foreign_records_are_faults_the_group_dead_letters_and_moves_past(kafka_server: TansuServer) -> None:
    url = f"kafka://{kafka_server.bootstrap}?{OPTIONS}&state_topic=__state_{uuid.uuid4().hex[:8]}"
    broker = KafkaBroker.from_url(url)
    topic = f"foreign-{uuid.uuid4().hex[:8]}"
    try:
        # Given good records around records another client wrote with bytes we cannot read
        await broker.publish(topic, [Record(b"good-0", "k")])
        producer = await broker.producer()
        await producer.send_and_wait(topic, b"bad-key", key=b"\xc3\x28", partition=0)
        await producer.send_and_wait(topic, b"bad-header", key=b"k", partition=0, headers=[("h", b"\xff")])
        await producer.send_and_wait(topic, b"bad-mark", partition=0, headers=[(RESUBMIT_OFFSET_HEADER, b"soon")])
        await broker.publish(topic, [Record(b"good-1", "k")])
        # When group g reads them, dead-letters the faults and acks the rest
        sub = await broker.subscribe(topic, "g")
        got: list[Delivery] = []
        deadline = time.monotonic() + 30
        while len(got) < 5 and time.monotonic() < deadline:
            batch = list(await sub.fetch(10, 1.0))
            got += batch
            if batch:
                await sub.settle(
                    Settlement(
                        acks=[d for d in batch if d.fault is None],
                        dead_letters=[(d, _letter(d)) for d in batch if d.fault is not None],
                    )
                )
        # Then the faults say what is wrong, the good records came in order, and nothing comes back
        assert [d.value for d in got if d.fault is None] == [b"good-0", b"good-1"]
        faults = {d.value: d for d in got if d.fault is not None}
        assert set(faults) == {b"bad-key", b"bad-header", b"bad-mark"}
        assert "key is not UTF-8" in (faults[b"bad-key"].fault or "")
        assert faults[b"bad-key"].key == "\\xc3("
        assert faults[b"bad-header"].headers == {"h": "\\xff"}
        assert "not an offset" in (faults[b"bad-mark"].fault or "")
        assert await sub.fetch(10, 1.0) == []
        await sub.close()
        letters = await broker.dead_letters(group="g")
        assert sorted(letter.value for letter in letters) == sorted(faults)
    finally:
        await broker.close()


async def test_a_record_near_the_size_limit_is_dead_lettered_whole(kafka_server: TansuServer) -> None:
    url = f"kafka://{kafka_server.bootstrap}?{OPTIONS}&state_topic=__state_{uuid.uuid4().hex[:8]}"
    broker = KafkaBroker.from_url(url)
    topic = f"big-{uuid.uuid4().hex[:8]}"
    try:
        # Given a record of 900 KB of binary: as latin-1 JSON its dead letter would take 1.8 MB
        big = bytes(range(256)) * 3600
        await broker.publish(topic, [Record(big, "k")])
        sub = await broker.subscribe(topic, "g")
        got: list[Delivery] = []
        while not got:
            got = list(await sub.fetch(10, 5.0))
        # When the group dead-letters it (before: the settle failed with MessageSizeTooLargeError, forever)
        await sub.settle(Settlement(dead_letters=[(got[0], _letter(got[0]))]))
        await sub.close()
        # Then the dead letter holds every byte, here and in a fresh reader of the state table
        (letter,) = await broker.dead_letters(group="g")
        assert letter.value == big
        other = KafkaBroker.from_url(url)
        try:
            assert (await other.dead_letter(letter.id)).value == big
        finally:
            await other.close()
        assert await broker.purge([letter.id]) == 1
        assert (await broker.dead_letter(letter.id)).value == big
        # And deleting it leaves none of its rows
        assert await broker.purge([letter.id], delete=True) == 1
        state = await broker.state()
        assert not [key for key in state.rows if letter.id in key]
    finally:
        await broker.close()
