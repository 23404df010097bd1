"""Unit tests of the NATS mapping: URL options, names, wire headers, message ids, error translation."""

from __future__ import annotations

import nats.errors
import nats.js.errors
import orjson
import pytest

from choreograph.brokers import open_broker
from choreograph.brokers.nats import NatsBroker, NatsConfig, parse_url
from choreograph.brokers.nats import naming as n
from choreograph.brokers.nats.translation import translate
from choreograph.core import codec
from choreograph.core.envelope import Envelope
from choreograph.core.errors import BrokerClosed, BrokerError, BrokerUnavailable, ConfigurationError, UnknownTopic


def test_url_lists_every_host_and_parses_options() -> None:
    config = parse_url("nats://a:4222,b:4223?replicas=3&storage=memory&partitions=4&max_age=none&ack_wait=5")
    assert config.servers == ("nats://a:4222", "nats://b:4223")
    assert (config.replicas, config.storage, config.partitions, config.max_age, config.ack_wait) == (
        3,
        "memory",
        4,
        None,
        5.0,
    )


def test_url_credentials_apply_to_every_host() -> None:
    # They travel as client options now, not re-embedded in each server URL (where reserved characters broke).
    config = parse_url("nats://u:p@a:1,b:2")
    assert config.servers == ("nats://a:1", "nats://b:2")
    assert (config.user, config.password) == ("u", "p")


def test_unknown_url_option_is_rejected_by_name() -> None:
    with pytest.raises(ConfigurationError, match=r"'replica'.*known options"):
        parse_url("nats://localhost:4222?replica=3")


@pytest.mark.parametrize(
    "changes",
    [{"replicas": 0}, {"replicas": 7}, {"storage": "disk"}, {"partitions": 0}, {"ack_wait": 0.5}, {"prefix": "a.b"}],
)
def test_invalid_config_is_rejected(changes: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        NatsConfig(**changes)  # type: ignore[arg-type]


def test_scheme_is_registered_and_does_not_connect() -> None:
    broker = open_broker("nats://127.0.0.1:1?prefix=unit")
    assert isinstance(broker, NatsBroker)
    assert broker.config.prefix == "unit"


@pytest.mark.parametrize("name", ["orders", "shop.order.placed", "a_b", "a.b", "é ü*>", "x~y", "_._"])
def test_token_is_one_reversible_subject_token(name: str) -> None:
    token = n.token(name)
    assert n.untoken(token) == name
    assert not set(token) & set(". *>\t\r\n")


def test_distinct_names_never_share_a_token() -> None:
    names = ["a.b", "a_b", "a__b", "a._b", "a~2eb"]
    assert len({n.token(name) for name in names}) == len(names)


def test_topic_maps_to_stream_subjects_and_group_to_consumer_per_partition() -> None:
    names = n.Names("choreo")
    assert names.stream("shop.order.placed") == "CHOREO_shop_order_placed"
    assert names.partition_subject("shop.order.placed", 3) == "choreo.shop_order_placed.3"
    assert names.resubmit_subject("orders", 3, "billing.charge") == "choreo.orders.3.r.billing_charge"
    assert names.stream_subjects("orders") == ["choreo.orders.*", "choreo.orders.*.r.*"]
    assert names.consumer("billing.charge", 3) == "billing_charge_p3"


def test_headers_round_trip_through_the_wire_form_unicode_included() -> None:
    headers = {"x-plain": "v", "x-ünicode": "välue ✓", "x-empty": "", "Nats-Msg-Id": "user", "sp": " padded "}
    wire = n.to_wire(headers, "clé")
    assert all(name.isascii() and value.isascii() for name, value in wire.items())
    assert wire["x-plain"] == "v"
    assert n.from_wire(wire) == (headers, "clé")
    assert n.from_wire(n.to_wire({}, None)) == ({}, None)


def test_line_breaks_never_reach_a_header_line() -> None:
    wire = n.to_wire({"x-trailing": "v\n", "x-crlf": "a\r\nb"}, "key\n")
    assert not any("\n" in name or "\r" in value or "\n" in value for name, value in wire.items())
    assert n.from_wire(wire) == ({"x-trailing": "v\n", "x-crlf": "a\r\nb"}, "key\n")
    raw = b'{"specversion":"1.0","type":"t","id":"a\\nb","source":"s\\r"}'
    assert "\n" not in n.message_id(raw, "fallback") and "\r" not in n.message_id(raw, "fallback")


def test_message_id_is_the_envelope_source_and_id_else_the_fallback() -> None:
    envelope = Envelope(id="01890000-0000-7000-8000-000000000000", source="svc", type="t.x")
    assert n.message_id(codec.encode(envelope), "fallback") == "svc/01890000-0000-7000-8000-000000000000"
    assert n.message_id(b"not an envelope", "fallback") == "fallback"
    assert n.message_id(b"{broken", "fallback") == "fallback"


@pytest.mark.parametrize(
    "value",
    [
        b'{"specversion":"1.0","id":"a\\"b","source":"s","type":"t"}',  # escaped quote in the id
        b'{"specversion":"1.0","id":"x","source":"caf\\u00e9","type":"t"}',  # escape in the source
        b'{"specversion":"1.0","id":"x","type":"t","source":"late"}',  # another key order
        b'{"specversion":"1.0","id":"","source":"s","type":"t"}',  # empty id
        b'{"specversion":"1.0","id":"x","source":"\xff","type":"t"}',  # not UTF-8
        b'{"specversion":"1.0","id":"x","source":"unterminated',
    ],
)
def test_message_id_reads_our_layout_fast_and_anything_else_like_a_json_parser(value: bytes) -> None:
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        expected = "fallback"
    else:
        expected = f"{doc['source']}/{doc['id']}" if doc.get("id") and doc.get("source") else "fallback"
    assert n.message_id(value, "fallback") == expected


def test_message_id_fast_path_agrees_with_the_codec_for_unicode_sources() -> None:
    envelope = Envelope(id="01890000-0000-7000-8000-000000000001", source="boutique/café ✓", type="t.x")
    assert n.message_id(codec.encode(envelope), "fallback") == "boutique/café ✓/01890000-0000-7000-8000-000000000001"


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (nats.errors.NoServersError(), BrokerUnavailable),
        (nats.errors.TimeoutError(), BrokerUnavailable),
        (nats.errors.ConnectionClosedError(), BrokerClosed),
        (nats.js.errors.NoStreamResponseError(), BrokerUnavailable),
        (nats.js.errors.ServiceUnavailableError(code=503), BrokerUnavailable),
        (nats.js.errors.NotFoundError(code=404, err_code=10059), UnknownTopic),
        (nats.js.errors.BadRequestError(code=400, err_code=10058), BrokerError),
    ],
)
def test_nats_errors_translate_to_broker_errors(error: Exception, expected: type[BrokerError]) -> None:
    translated = translate(error, "test")
    assert type(translated) is expected
    assert "NATS test failed" in str(translated)


async def test_ping_of_an_unreachable_server_raises_broker_unavailable() -> None:
    broker = NatsBroker(NatsConfig(servers=("nats://127.0.0.1:1",), connect_timeout=0.5))
    with pytest.raises(BrokerUnavailable):
        await broker.ping()
    await broker.close()
