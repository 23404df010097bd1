"""Messages other clients wrote, and dead letters of any size, on a real nats-server.

Foreign messages with forged choreograph headers are deliveries with a
``fault`` that settle like any other; a record close to ``max_payload`` is
dead-lettered (its value in chunks) and resubmitted whole; a dead letter the
bucket refuses is parked without holding up the rest of the partition.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.js import api

from choreograph.brokers.nats import NatsBroker
from choreograph.brokers.nats import naming as n
from choreograph.brokers.nats.native import translate
from choreograph.core.broker import DeadLetter, Delivery, Record, Settlement
from choreograph.core.ids import new_id
from tests.fuzz.budget import fuzz_settings

from .server import NatsServer

_values = st.text(max_size=20) | st.sampled_from(["{}", '{"a":"b"}', '{"a":1}', "[1]", '"x"', "12", '{"a":"\\ud800"}'])
_names = st.sampled_from([n.HEADERS_HEADER, n.OFFSET_HEADER, n.KEY_HEADER, n.MSG_ID_HEADER, "Nats-Sequence", "h"])


@fuzz_settings(0.05)  # 200 inputs in the normal run; 50,000 under HYPOTHESIS_PROFILE=fuzz
@given(
    wire=st.none() | st.dictionaries(_names | st.text(max_size=6), _values, max_size=4),
    seq=st.integers(1, 2**40),
    subject=st.sampled_from(["p.t.0", "p.t.0.r.g"]),
)
def test_any_headers_translate_without_an_exception(wire: dict[str, str] | None, seq: int, subject: str) -> None:
    headers, key, offset, fault = translate(wire, seq, subject)
    assert key is None or isinstance(key, str)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
    "".join((key or "", *headers, *headers.values())).encode()  # storable as UTF-8 in a dead letter
    assert isinstance(offset, int)
    if fault is None and offset != seq:
        assert subject.endswith(".r.g")  # only a resubmission reports another offset
    if fault is not None:
        assert fault and offset == seq


def test_what_we_write_translates_back() -> None:
    wire = n.to_wire({"x-\u00fc": "v\u2713", "plain": "p"}, "cl\u00e9")
    assert translate(wire, 7, "p.t.0") == ({"x-\u00fc": "v\u2713", "plain": "p"}, "cl\u00e9", 7, None)
    assert translate({**wire, n.OFFSET_HEADER: "3"}, 7, "p.t.0.r.g")[2:] == (3, None)


@pytest.fixture
async def broker(nats_server: NatsServer) -> AsyncIterator[NatsBroker]:
    """A broker with its own prefix and one partition on the shared test server."""
    broker = NatsBroker.from_url(f"{nats_server.url}?prefix=f{uuid.uuid4().hex[:8]}&partitions=1")
    yield broker
    await broker.close()


def _letter(delivery: Delivery) -> DeadLetter:
    now = time.time()
    return DeadLetter(
        id=new_id(), topic=delivery.topic, group="g", handler="h", partition=delivery.partition,
        offset=delivery.offset, key=delivery.key, value=delivery.value, headers=dict(delivery.headers),
        event_id=None, event_type=None, reason="decode", error_type="", error_message=delivery.fault or "x",
        stack="", attempts=delivery.attempt, first_failure=now, last_failure=now,
    )  # fmt: skip


async def _consume(broker: NatsBroker, topic: str, count: int, bad: bytes | None = None) -> list[Delivery]:
    """Fetch ``count`` deliveries of group g; dead-letter faults (and the value ``bad``), ack the rest."""
    sub = await broker.subscribe(topic, "g")
    got: list[Delivery] = []
    try:
        deadline = time.monotonic() + 15
        while len(got) < count and time.monotonic() < deadline:
            batch = list(await sub.fetch(100, 0.5))
            if batch:
                doomed = [d for d in batch if d.fault is not None or d.value == bad]
                await sub.settle(
                    Settlement(
                        acks=[d for d in batch if d not in doomed], dead_letters=[(d, _letter(d)) for d in doomed]
                    )
                )
            got += batch
        assert await sub.fetch(100, 0.5) == []  # nothing comes back: every settle held
    finally:
        await sub.close()
    return got


async def test_messages_with_forged_choreograph_headers_are_faults_that_settle(broker: NatsBroker) -> None:
    # Given good records around messages another client published with our headers broken
    await broker.publish("t", [Record(b"good-0", key="k")])
    subject = broker.names.partition_subject("t", 0)
    forged = {
        b"not-json": {n.HEADERS_HEADER: "{not json"},
        b"not-strings": {n.HEADERS_HEADER: '{"a": 1}'},
        b"surrogate": {n.HEADERS_HEADER: '{"a": "\\ud800"}'},
        b"bad-offset": {n.OFFSET_HEADER: "0"},  # outside a resubmission: it would alias good-0
    }
    for value, headers in forged.items():
        await broker.jetstream.publish(subject, value, headers=headers)
    await broker.publish("t", [Record(b"good-1", key="k")])
    # When group g consumes, dead-lettering the faults
    got = await _consume(broker, "t", 2 + len(forged))
    # Then each forged message was a fault, the good ones came in order, and every settle held
    assert [d.value for d in got if d.fault is None] == [b"good-0", b"good-1"]
    assert sorted(d.value for d in got if d.fault is not None) == sorted(forged)
    assert len({d.offset for d in got}) == len(got)
    letters = await broker.dead_letters(group="g")
    assert sorted(letter.value for letter in letters) == sorted(forged)


async def test_a_record_near_max_payload_is_dead_lettered_whole_and_resubmitted_whole(broker: NatsBroker) -> None:
    # Given a record whose dead letter's JSON (base64) is far over max_payload
    await broker.ping()
    big = bytes(range(256)) * ((broker.connection.max_payload - 2048) // 256)
    await broker.publish("t", [Record(big, key="k"), Record(b"after", key="k")])
    # When the group dead-letters it
    got = await _consume(broker, "t", 2, bad=big)
    assert [d.value for d in got] == [big, b"after"]
    # Then the dead letter holds every byte, listed and read alone
    (letter,) = await broker.dead_letters(group="g")
    assert letter.value == big
    assert (await broker.dead_letter(letter.id)).value == big
    # And a resubmission hands the whole record back to the group
    assert await broker.resubmit(letter.id)
    (again,) = await _consume(broker, "t", 1)
    assert again.value == big
    assert (await broker.dead_letter(letter.id)).status == "resubmitted"
    # And deleting it erases its chunks too: nothing of it is left in the bucket's stream
    stored = await _subjects_of(broker, letter.id)
    assert len(stored) > 2, "the entry and at least two chunks"
    assert await broker.purge([letter.id], delete=True) == 1
    assert await _subjects_of(broker, letter.id) == []


async def _subjects_of(broker: NatsBroker, dead_letter_id: str) -> list[str]:
    info = await broker.jetstream.stream_info(f"KV_{broker.names.dlq_bucket}", subjects_filter=">")
    return [subject for subject in (info.state.subjects or {}) if dead_letter_id in subject]


async def test_a_dead_letter_the_bucket_refuses_is_parked_and_the_partition_moves_on(nats_server: NatsServer) -> None:
    # Given a dead-letter bucket that refuses anything more (its stream is full)
    url = f"{nats_server.url}?prefix=f{uuid.uuid4().hex[:8]}&partitions=1&publish_timeout=1"
    broker = NatsBroker.from_url(url)
    await broker.publish("t", [Record(b"x" * 4000, key="a"), Record(b"ok", key="b")])
    js = broker.jetstream
    config = (await js.stream_info(f"KV_{broker.names.dlq_bucket}")).config
    config.max_bytes, config.discard = 1024, api.DiscardPolicy.NEW
    await js.update_stream(config)
    # When the group dead-letters the first record and acks the second
    sub = await broker.subscribe("t", "g")
    got: list[Delivery] = []
    while len(got) < 2:
        got += await sub.fetch(10, 5)
    poison, ok = sorted(got, key=lambda d: d.value != b"x" * 4000)
    await sub.settle(Settlement(acks=[ok], dead_letters=[(poison, _letter(poison))]))
    # Then the settle went through: the ack held, the poison record is parked (not redelivered now), and counted
    assert broker.dead_letters_parked == 1
    assert await sub.fetch(10, 1.0) == []
    assert await broker.dead_letters() == []
    await sub.close()
    await broker.close()
