"""core.partitioning: keyed records hash stably, unkeyed ones take turns per topic."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from choreograph.core.partitioning import RoundRobin, partition_for


def test_unkeyed_records_take_turns_per_topic() -> None:
    rr = RoundRobin()
    assert rr.assign("a", [None, None, None], 2) == [0, 1, 0]
    assert rr.assign("b", [None], 2) == [0]  # another topic has its own turn
    assert rr.assign("a", [None, "k", None], 2) == [1, partition_for("k", 2), 0]


@given(st.lists(st.one_of(st.none(), st.text(max_size=8)), max_size=30), st.integers(1, 16))
def test_assign_and_partition_agree_with_partition_for(keys: list[str | None], partitions: int) -> None:
    batch, single = RoundRobin(), RoundRobin()
    placed = batch.assign("t", keys, partitions)
    assert placed == [single.partition("t", key, partitions) for key in keys]
    turn = 0
    for key, p in zip(keys, placed, strict=True):
        assert p == partition_for(key, partitions, turn)
        turn += key is None
