"""The history checker (the oracle): names what went wrong in a recorded history.

Anomalies, per consumer group and topic:

- ``lost``: an acknowledged publish the group never delivered, or delivered
  but never finished (acked or dead-lettered) — a nack that never came back;
- ``duplicate``: a delivery the group did not ask for — the message was
  delivered before and that delivery was not retried (nor resubmitted). At
  least once allows them, so they are counted; a scenario where nothing fails
  forbids them, and with ``dedupe=True`` the handler runs are counted instead;
- ``reordered``: for one partition key, a record first delivered before an
  earlier-published one, or delivered after a later-published one was acked;
- ``unseen``: a delivery of something never published to that topic, or not
  expected by this group (cross-talk, a wrong start position, corruption);
- ``delivered_after_ack``: a delivery of a message the group had acked.

A scenario states which anomalies its backend's guarantees forbid and calls
:meth:`Report.assert_ok`, which raises :class:`AnomalyError` listing the
offending events.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from choreograph.core.broker import Record
from choreograph.testing.history import (
    ACK,
    DEAD_LETTER,
    DELIVER,
    HANDLE,
    PUBLISH,
    RESUBMIT,
    RETRY,
    History,
    HistoryEvent,
)

LOST: Final = "lost"
DUPLICATE: Final = "duplicate"
REORDERED: Final = "reordered"
UNSEEN: Final = "unseen"
DELIVERED_AFTER_ACK: Final = "delivered_after_ack"
ANOMALIES: Final = (LOST, DUPLICATE, REORDERED, UNSEEN, DELIVERED_AFTER_ACK)

_SHOWN: Final = 8


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One thing that went wrong, with the events that show it."""

    kind: str
    message: str
    detail: str
    events: tuple[HistoryEvent, ...] = ()

    def __str__(self) -> str:
        lines = [f"{self.kind}: {self.message!r} — {self.detail}"]
        lines += [f"    {event}" for event in self.events]
        return "\n".join(lines)


class AnomalyError(AssertionError):
    """A history shows anomalies the backend's guarantees forbid."""

    def __init__(self, kinds: set[str], text: str) -> None:
        super().__init__(text)
        self.kinds = kinds


@dataclass(slots=True)
class Report:
    """What :func:`check` found for one group."""

    group: str
    topics: tuple[str, ...]
    published: int
    delivered: int
    duplicates: int
    anomalies: list[Anomaly] = field(default_factory=list)

    @property
    def kinds(self) -> set[str]:
        """The distinct anomaly kinds found."""
        return {a.kind for a in self.anomalies}

    def of(self, kind: str) -> list[Anomaly]:
        """The anomalies of one kind."""
        return [a for a in self.anomalies if a.kind == kind]

    def summary(self) -> str:
        """One line: counts per kind."""
        counts = ", ".join(f"{k}={len(self.of(k))}" for k in ANOMALIES if self.of(k))
        return (
            f"group {self.group!r} on {', '.join(self.topics)}: {self.published} published, "
            f"{self.delivered} delivered, {self.duplicates} duplicate(s); " + (counts or "no anomalies")
        )

    def assert_ok(self, forbid: Iterable[str], *, max_duplicates: int | None = None) -> None:
        """Raise :class:`AnomalyError` if any forbidden anomaly occurred.

        ``duplicate`` in ``forbid`` means none at all; ``max_duplicates`` bounds
        their number instead (for example by the in-flight window after a crash).
        """
        forbidden = set(forbid)
        unknown = forbidden - set(ANOMALIES)
        if unknown:
            raise ValueError(f"unknown anomaly kind(s) {sorted(unknown)}; known: {list(ANOMALIES)}")
        found = [a for a in self.anomalies if a.kind in forbidden]
        kinds = {a.kind for a in found}
        extra = ""
        if max_duplicates is not None and self.duplicates > max_duplicates:
            kinds.add(DUPLICATE)
            extra = f"{self.duplicates} duplicates exceed the bound of {max_duplicates}\n"
            if DUPLICATE not in forbidden:
                found += self.of(DUPLICATE)
        if not kinds:
            return
        lines = [f"forbidden anomalies: {', '.join(sorted(kinds))}", self.summary(), extra.rstrip()]
        for kind in ANOMALIES:
            of_kind = [a for a in found if a.kind == kind]
            lines += [str(a) for a in of_kind[:_SHOWN]]
            if len(of_kind) > _SHOWN:
                lines.append(f"... and {len(of_kind) - _SHOWN} more {kind}")
        raise AnomalyError(kinds, "\n".join(line for line in lines if line))


def check(
    history: History,
    *,
    group: str,
    topic: str | Sequence[str],
    expect: Iterable[str] | None = None,
    dedupe: bool = False,
) -> Report:
    """Check what ``group`` observed on ``topic`` against what was published there.

    ``expect`` restricts the messages the group should get (default: every
    acknowledged publish to the topic(s)); ``dedupe`` counts duplicate handler
    runs instead of duplicate deliveries.
    """
    topics = (topic,) if isinstance(topic, str) else tuple(topic)
    published: dict[tuple[str, str], HistoryEvent] = {}
    order: list[tuple[str, str]] = []
    per_message: dict[tuple[str, str], list[HistoryEvent]] = {}
    for event in history.events:
        if event.topic not in topics:
            continue
        ident = (event.topic, event.message)
        if event.kind == PUBLISH:
            if ident not in published:
                published[ident] = event
                order.append(ident)
        elif event.group == group:
            per_message.setdefault(ident, []).append(event)
    wanted = set(order) if expect is None else {(t, m) for t in topics for m in expect if (t, m) in published}
    report = Report(group, topics, len(wanted), 0, 0)
    for ident in order:
        if ident in wanted:
            _check_finished(report, ident, published[ident], per_message.get(ident, []))
    for ident, events in per_message.items():
        deliveries = [e for e in events if e.kind == DELIVER]
        report.delivered += len(deliveries)
        if deliveries and ident not in wanted:
            why = "never published to this topic" if ident not in published else "not expected by this group"
            report.anomalies.append(Anomaly(UNSEEN, ident[1], f"delivered but {why}", tuple(deliveries[:3])))
            continue
        _check_duplicates(report, ident, events, dedupe)
        _check_after_ack(report, ident, events)
    _check_order(report, [i for i in order if i in wanted], published, per_message)
    return report


def check_replay(history: History, *, group: str, topic: str, replayed: Sequence[Record]) -> Report:
    """Check that ``group`` got exactly the ``replayed`` records on ``topic``: a reset or copied range.

    ``replayed`` is the range in its source order (per partition, by offset),
    recorded here as the publishes ``group`` must see; the report then names
    what of it was lost, what arrived out of per-key order, duplicated, or
    arrived without being in the range (``unseen``).
    """
    ids = history.published(topic, replayed)
    return check(history, group=group, topic=topic, expect=ids)


def _check_finished(report: Report, ident: tuple[str, str], publish: HistoryEvent, events: list[HistoryEvent]) -> None:
    deliveries = [e for e in events if e.kind == DELIVER]
    if not deliveries:
        report.anomalies.append(Anomaly(LOST, ident[1], "acknowledged publish never delivered", (publish,)))
        return
    done = False
    for event in events:
        if event.kind in (ACK, DEAD_LETTER):
            done = True
        elif event.kind == RESUBMIT:
            done = False
    if not done:
        last = events[-1]
        report.anomalies.append(
            Anomaly(
                LOST,
                ident[1],
                f"delivered {len(deliveries)} time(s) but never acked or dead-lettered (last: {last.kind})",
                (publish, *events[-4:]),
            )
        )


def _check_duplicates(report: Report, ident: tuple[str, str], events: list[HistoryEvent], dedupe: bool) -> None:
    counted = HANDLE if dedupe else DELIVER
    previous: HistoryEvent | None = None
    asked = True  # the first delivery is always wanted
    for event in events:
        if event.kind == counted:
            if previous is not None and not asked:
                report.duplicates += 1
                report.anomalies.append(
                    Anomaly(DUPLICATE, ident[1], f"{counted} again without a retry", (previous, event))
                )
            previous, asked = event, False
        elif event.kind in (RETRY, RESUBMIT):
            asked = True


def _check_after_ack(report: Report, ident: tuple[str, str], events: list[HistoryEvent]) -> None:
    acked: HistoryEvent | None = None
    for event in events:
        if event.kind == ACK:
            acked = event
        elif event.kind == RESUBMIT:
            acked = None
        elif event.kind == DELIVER and acked is not None:
            report.anomalies.append(
                Anomaly(DELIVERED_AFTER_ACK, ident[1], "delivered again after the group acked it", (acked, event))
            )
            acked = None


def _check_order(
    report: Report,
    order: list[tuple[str, str]],
    published: dict[tuple[str, str], HistoryEvent],
    per_message: dict[tuple[str, str], list[HistoryEvent]],
) -> None:
    by_key: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for ident in order:
        key = published[ident].key
        if key is not None:
            by_key.setdefault((ident[0], key), []).append(ident)
    for idents in by_key.values():
        firsts: list[tuple[tuple[str, str], HistoryEvent]] = []
        for ident in idents:
            delivery = next((e for e in per_message.get(ident, []) if e.kind == DELIVER), None)
            if delivery is not None:
                firsts.append((ident, delivery))
        for (a, first_a), (b, first_b) in itertools.pairwise(firsts):
            if first_b.seq < first_a.seq:
                report.anomalies.append(
                    Anomaly(
                        REORDERED,
                        b[1],
                        f"delivered before {a[1]!r}, published earlier with the same key",
                        (published[a], published[b], first_b, first_a),
                    )
                )
        _check_delivered_after_later_ack(report, idents, published, per_message)


def _check_delivered_after_later_ack(
    report: Report,
    idents: list[tuple[str, str]],
    published: dict[tuple[str, str], HistoryEvent],
    per_message: dict[tuple[str, str], list[HistoryEvent]],
) -> None:
    earliest_later_ack: HistoryEvent | None = None
    for ident in reversed(idents):
        events = per_message.get(ident, [])
        if earliest_later_ack is not None and not any(e.kind == RESUBMIT for e in events):
            own_ack = next((e.seq for e in events if e.kind == ACK), None)
            late = [  # deliveries after its own ack are delivered_after_ack, not reordering
                e
                for e in events
                if e.kind == DELIVER and e.seq > earliest_later_ack.seq and (own_ack is None or e.seq < own_ack)
            ]
            if late:
                report.anomalies.append(
                    Anomaly(
                        REORDERED,
                        ident[1],
                        f"delivered after {earliest_later_ack.message!r}, published later with the same key, was acked",
                        (published[ident], earliest_later_ack, late[0]),
                    )
                )
        acks = [e for e in events if e.kind == ACK]
        if acks and (earliest_later_ack is None or acks[0].seq < earliest_later_ack.seq):
            earliest_later_ack = acks[0]
