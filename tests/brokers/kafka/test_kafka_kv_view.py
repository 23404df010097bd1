"""The Kafka key-value log rules: every reader agrees, and compaction never changes the table.

The log is simulated (no broker): writers race plain writes with stale
expectations, a writer that lost appends copies as :mod:`choreograph.brokers.kafka.kv`
does, and then the log is compacted the way Kafka's cleaner does it at any
boundary. Reading the compacted log must give the same table as reading the
whole log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from choreograph.brokers.kafka.kv_view import COPY_OF_HEADER, EXPECT_HEADER, KeyValueView


@dataclass(frozen=True)
class Rec:
    offset: int
    key: str
    value: bytes | None
    headers: dict[str, str]


def read(log: list[Rec]) -> KeyValueView:
    view = KeyValueView()
    for rec in log:
        view.apply(rec.offset, rec.key, rec.value, rec.headers)
    return view


def table(view: KeyValueView) -> dict[str, tuple[bytes, int]]:
    return {k: (s.value, s.revision) for k, s in view.keys.items() if s.value is not None}


def compact(log: list[Rec], boundary: int, drop_tombstones: bool) -> list[Rec]:
    """Kafka's cleaner up to ``boundary``: keep a record there only if it is its key's last before it."""
    last = {rec.key: rec.offset for rec in log if rec.offset < boundary}
    kept = []
    for rec in log:
        if rec.offset < boundary:
            if last[rec.key] != rec.offset:
                continue
            if drop_tombstones and rec.value is None:
                continue  # past delete.retention.ms
        kept.append(rec)
    return kept


KEYS = ("a", "b")
step = st.one_of(
    st.tuples(st.just("write"), st.sampled_from(KEYS), st.booleans(), st.integers(0, 4), st.integers(0, 5)),
    st.tuples(st.just("repair"), st.integers(0, 3)),
    st.tuples(st.just("repair"), st.integers(0, 3)),
)


@dataclass
class Repairer:
    """A writer that lost, repairing as kv.KafkaKeyValue._repair does: read, then (later) append, then read again."""

    key: str
    lost_at: int
    copies: int = 0
    planned: Rec | None = None
    done_at: int = -1

    def step(self, log: list[Rec]) -> bool:
        """Do the next part; False once the repair is over."""
        if self.planned is not None:  # the copy decided earlier lands now, after whatever came between
            planned, self.planned = self.planned, None
            log.append(Rec(len(log), planned.key, planned.value, planned.headers))
            self.copies += 1
            return True
        view = read(log)
        if self.copies and view.settled(self.key):
            self.done_at = len(log) - 1
            return False
        if self.copies >= 20:
            raise AssertionError("repair did not settle")
        value, headers = view.copy(self.key)
        self.planned = Rec(-1, self.key, value, headers)
        return True


def simulate(steps: list[tuple[Any, ...]]) -> tuple[list[Rec], list[int]]:
    """Writers with views that lag by up to 4 records; losers repair, interleaved with other writes.

    Returns the log and the boundaries the cleaner may use: those outside every repair
    (between a lost record and the copy that settled it), see :mod:`choreograph.brokers.kafka.kv_view`.
    """
    log: list[Rec] = []
    repairers: list[Repairer] = []
    finished: list[Repairer] = []
    for s in steps:
        if s[0] == "write":
            _, key, delete, lag, flavour = s
            stale = read(log[: max(0, len(log) - int(lag))])  # the writer's view when it decided
            expect = None if flavour == 0 else stale.revision(str(key))
            headers = {} if expect is None else {EXPECT_HEADER: str(expect)}
            value = None if delete else f"v{len(log)}".encode()
            log.append(Rec(len(log), str(key), value, headers))
            if not read(log).outcomes[len(log) - 1][0]:
                repairers.append(Repairer(str(key), len(log) - 1))
        elif repairers:
            chosen = repairers[int(s[1]) % len(repairers)]
            if not chosen.step(log):
                repairers.remove(chosen)
                finished.append(chosen)
    while repairers:  # the rest finish, one step each in turn
        for repairer in list(repairers):
            if not repairer.step(log):
                repairers.remove(repairer)
                finished.append(repairer)
    boundaries = [b for b in range(len(log) + 1) if not any(r.lost_at < b <= r.done_at for r in finished)]
    return log, boundaries


@settings(max_examples=400, deadline=None)
@given(st.lists(step, max_size=25), st.data())
def test_compaction_at_any_boundary_keeps_the_table(steps: list[tuple[Any, ...]], data: st.DataObject) -> None:
    log, boundaries = simulate(steps)
    full = table(read(log))
    boundary = data.draw(st.sampled_from(boundaries))
    drop = data.draw(st.booleans())
    assert table(read(compact(log, boundary, drop))) == full
    # twice, as the cleaner runs again later with a later boundary
    later = data.draw(st.sampled_from([b for b in boundaries if b >= boundary]))
    assert table(read(compact(compact(log, boundary, drop), later, drop))) == full


def test_a_write_expecting_a_stale_revision_loses_and_changes_nothing() -> None:
    view = KeyValueView()
    view.apply(0, "k", b"one", {EXPECT_HEADER: "0"})
    view.apply(1, "k", b"two", {EXPECT_HEADER: "1"})
    view.apply(2, "k", b"late", {EXPECT_HEADER: "1"})
    assert table(view) == {"k": (b"two", 2)}
    assert view.outcomes[2] == (False, 2)
    assert not view.settled("k")
    value, headers = view.copy("k")
    view.apply(3, "k", value, headers)
    assert view.settled("k")
    assert table(view) == {"k": (b"two", 2)}


def test_a_loser_left_unrepaired_is_an_orphan_once_old_enough() -> None:
    view = KeyValueView()
    view.apply(0, "k", b"one", {}, at=100.0)
    view.apply(1, "k", b"late", {EXPECT_HEADER: "7"}, at=105.0)  # lost; its writer never appended a copy
    assert view.unsettled == {"k": 105.0}
    assert view.orphans(written_before=104.0) == []
    assert view.orphans(written_before=135.0) == ["k"]
    value, headers = view.copy("k")
    view.apply(2, "k", value, headers, at=136.0)
    assert view.unsettled == {}
    assert table(view) == {"k": (b"one", 1)}


def test_a_record_with_headers_not_ours_changes_nothing() -> None:
    view = KeyValueView()
    view.apply(0, "k", b"one", {})
    view.apply(1, "k", b"foreign", {EXPECT_HEADER: "one"})
    view.apply(2, "k", b"foreign", {COPY_OF_HEADER: "x"})
    assert table(view) == {"k": (b"one", 1)}
    assert view.outcomes[1] == (False, 1)
    view.apply(3, "new", b"first", {EXPECT_HEADER: "?"})  # a key's first record, unreadable: not applied
    assert "new" not in table(view)
