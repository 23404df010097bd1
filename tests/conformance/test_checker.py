"""The history checker names each anomaly from hand-written histories."""

import pytest

from choreograph.core.broker import Delivery, Record, Settlement
from choreograph.testing import (
    DELIVERED_AFTER_ACK,
    DUPLICATE,
    LOST,
    MESSAGE_ID_HEADER,
    REORDERED,
    UNSEEN,
    AnomalyError,
    History,
    HistoryEvent,
    check,
)

T, G, M = "topic", "group", "group/m1"


def record(mid: str, key: str | None = "k") -> Record:
    return Record(mid.encode(), key=key, headers={MESSAGE_ID_HEADER: mid})


def delivery(mid: str, offset: int, attempt: int = 1, key: str | None = "k", topic: str = T) -> Delivery:
    return Delivery(topic, 0, offset, mid.encode(), key=key, headers={MESSAGE_ID_HEADER: mid}, attempt=attempt)


def deliver_and_ack(history: History, *deliveries: Delivery) -> None:
    history.delivered(G, M, deliveries)
    history.settled(G, M, Settlement(acks=list(deliveries)))


def test_a_clean_history_has_no_anomalies() -> None:
    h = History()
    h.published(T, [record("a"), record("b")])
    deliver_and_ack(h, delivery("a", 0), delivery("b", 1))
    report = check(h, group=G, topic=T)
    assert report.anomalies == []
    report.assert_ok({LOST, DUPLICATE, REORDERED, UNSEEN, DELIVERED_AFTER_ACK})


def test_a_publish_never_delivered_is_lost() -> None:
    h = History()
    h.published(T, [record("a"), record("b")])
    deliver_and_ack(h, delivery("a", 0))
    report = check(h, group=G, topic=T)
    assert report.kinds == {LOST}
    assert report.of(LOST)[0].message == "b"


def test_a_nack_that_never_comes_back_is_lost() -> None:
    h = History()
    h.published(T, [record("a")])
    h.delivered(G, M, [delivery("a", 0)])
    h.settled(G, M, Settlement(retries=[(delivery("a", 0), 0.0)]))
    report = check(h, group=G, topic=T)
    assert report.kinds == {LOST}
    assert "never acked" in report.of(LOST)[0].detail


def test_a_dead_letter_finishes_a_message() -> None:
    h = History()
    h.published(T, [record("a")])
    h.delivered(G, M, [delivery("a", 0)])
    h.add("dead_letter", "a", T, group=G, member=M)
    assert check(h, group=G, topic=T).anomalies == []


def test_a_redelivery_after_a_retry_is_not_a_duplicate_but_an_unasked_one_is() -> None:
    h = History()
    h.published(T, [record("a", key=None), record("b", key=None)])
    a1, a2, a3 = (delivery("a", 0, attempt=n, key=None) for n in (1, 2, 3))
    b = delivery("b", 1, key=None)
    h.delivered(G, M, [a1, b])
    h.settled(G, M, Settlement(retries=[(a1, 0.0)], acks=[b]))
    h.delivered(G, M, [a2])
    h.delivered(G, M, [a3])  # nobody asked for this one
    h.settled(G, M, Settlement(acks=[a3]))
    report = check(h, group=G, topic=T)
    assert report.kinds == {DUPLICATE}
    assert report.duplicates == 1
    report.assert_ok({LOST, UNSEEN, DELIVERED_AFTER_ACK}, max_duplicates=1)
    with pytest.raises(AnomalyError) as caught:
        report.assert_ok({LOST}, max_duplicates=0)
    assert caught.value.kinds == {DUPLICATE}


def test_dedupe_counts_handler_runs_not_deliveries() -> None:
    h = History()
    h.published(T, [record("a")])
    h.delivered(G, M, [delivery("a", 0)])
    h.handled(G, M, delivery("a", 0))
    h.delivered(G, M, [delivery("a", 0, attempt=2)])  # a duplicate delivery the inbox absorbed
    h.settled(G, M, Settlement(acks=[delivery("a", 0, attempt=2)]))
    assert check(h, group=G, topic=T).duplicates == 1
    assert check(h, group=G, topic=T, dedupe=True).duplicates == 0
    h.handled(G, M, delivery("a", 0, attempt=2))
    assert check(h, group=G, topic=T, dedupe=True).kinds == {DUPLICATE}


def test_first_deliveries_out_of_publish_order_for_a_key_are_reordered() -> None:
    h = History()
    h.published(T, [record("a"), record("b"), record("c", key="other")])
    deliver_and_ack(h, delivery("b", 1), delivery("c", 2, key="other"), delivery("a", 0))
    report = check(h, group=G, topic=T)
    assert report.kinds == {REORDERED}
    assert report.of(REORDERED)[0].message == "b"


def test_a_delivery_after_a_later_record_of_its_key_was_acked_is_reordered() -> None:
    h = History()
    h.published(T, [record("a"), record("b")])
    h.delivered(G, M, [delivery("a", 0), delivery("b", 1)])
    h.settled(G, M, Settlement(retries=[(delivery("a", 0), 0.0)], acks=[delivery("b", 1)]))
    deliver_and_ack(h, delivery("a", 0, attempt=2))
    assert check(h, group=G, topic=T).kinds == {REORDERED}


def test_keyless_records_have_no_order_to_keep() -> None:
    h = History()
    h.published(T, [record("a", key=None), record("b", key=None)])
    deliver_and_ack(h, delivery("b", 1, key=None), delivery("a", 0, key=None))
    assert check(h, group=G, topic=T).anomalies == []


def test_cross_talk_and_unexpected_records_are_unseen() -> None:
    h = History()
    h.published(T, [record("a")])
    h.published("elsewhere", [record("x")])
    deliver_and_ack(h, delivery("a", 0), delivery("x", 1))
    report = check(h, group=G, topic=T)
    assert report.kinds == {UNSEEN}
    assert check(h, group=G, topic=T, expect=[]).kinds == {UNSEEN}


def test_a_delivery_after_ack_is_named_unless_resubmitted() -> None:
    h = History()
    h.published(T, [record("a")])
    deliver_and_ack(h, delivery("a", 0))
    h.resubmitted(G, T, "a")
    deliver_and_ack(h, delivery("a", 0))
    assert check(h, group=G, topic=T).anomalies == []
    deliver_and_ack(h, delivery("a", 0, attempt=2))
    assert DELIVERED_AFTER_ACK in check(h, group=G, topic=T).kinds


def test_other_groups_do_not_count() -> None:
    h = History()
    h.published(T, [record("a")])
    h.delivered("another", "another/m1", [delivery("a", 0)])
    assert check(h, group=G, topic=T).kinds == {LOST}


def test_the_failure_message_prints_the_offending_events() -> None:
    h = History()
    h.published(T, [record("a")])
    with pytest.raises(AnomalyError) as caught:
        check(h, group=G, topic=T).assert_ok({LOST})
    text = str(caught.value)
    assert "lost: 'a'" in text
    assert "#1 publish 'a' topic" in text


def test_unknown_anomaly_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown anomaly"):
        check(History(), group=G, topic=T).assert_ok({"lsot"})


def test_events_round_trip_through_json_lines() -> None:
    event = HistoryEvent(3, "deliver", "ü", T, group=G, member=M, key="k", partition=1, offset=2, attempt=1)
    assert HistoryEvent.from_json(event.to_json()) == event
