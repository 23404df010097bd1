"""The key-value flow store answers exactly as the in-memory reference store does, for any instances."""

from __future__ import annotations

import asyncio
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from choreograph.core.errors import BrokerUnavailable
from choreograph.core.kv import MAX_KEY_LENGTH, Entry, MemoryKeyValue
from choreograph.observe.flows import FlowStore, FlowStoreError, Instance, MemoryFlowStore
from choreograph.observe.flows.kv_store import KeyValueFlowStore, instance_key

FLOWS = st.sampled_from(["order", "pay.v2", "needs/hash", "x" * 80])
CIDS = st.one_of(
    st.uuids().map(str),
    st.text(min_size=1, max_size=12),  # any characters: spaces, non-ASCII, "/" -> stored under a hash
    st.just("k" * 250),  # longer than a key
)
WAKES = st.one_of(st.none(), st.just(-math.inf), st.floats(0, 100, allow_nan=False))
DONES = st.one_of(st.none(), st.floats(0, 100, allow_nan=False))


@st.composite
def instances(draw: st.DrawFn) -> list[Instance]:
    found: dict[tuple[str, str], Instance] = {}
    for _ in range(draw(st.integers(0, 25))):
        flow, cid = draw(FLOWS), draw(CIDS)
        instance = Instance(flow, cid, notices={"final": draw(st.booleans())})
        instance.wake_at, instance.finished_at = draw(WAKES), draw(DONES)
        found[(flow, cid)] = instance
    return list(found.values())


def _view(found: list[Instance]) -> list[tuple[str, str, float | None, float | None, dict[str, bool]]]:
    return [(i.flow, i.correlation_id, i.wake_at, i.finished_at, i.notices) for i in found]


async def _answers(store: FlowStore, saved: list[Instance], probe: tuple[str, float, str, int]) -> list[object]:
    flow, until, after, limit = probe
    await store.save(saved)
    first = await store.due(flow, until, limit=limit)
    answers: list[object] = [
        _view(await store.load(flow)),
        _view(await store.load(flow, after=after, limit=limit)),
        _view(await store.fetch(flow, [i.correlation_id for i in saved[::2]] + ["absent"])),
        _view(first),
    ]
    if first:
        last = first[-1]
        assert last.wake_at is not None
        answers.append(_view(await store.due(flow, until, after=(last.wake_at, last.correlation_id), limit=limit)))
    answers.append(await store.forget(flow, until))
    answers.append(_view(await store.load(flow)))
    await store.close()
    return answers


@settings(max_examples=150, deadline=None)
@given(saved=instances(), flow=FLOWS, until=st.floats(0, 100), after=st.text(max_size=3), limit=st.integers(1, 5))
def test_key_value_store_answers_as_the_reference_store(
    saved: list[Instance], flow: str, until: float, after: str, limit: int
) -> None:
    probe = (flow, until, after, limit)
    expected = asyncio.run(_answers(MemoryFlowStore(), saved, probe))
    actual = asyncio.run(_answers(KeyValueFlowStore(MemoryKeyValue("flows")), saved, probe))
    assert actual == expected


def test_keys_are_valid_for_every_backend_and_distinct_per_flow() -> None:
    keys = {instance_key(flow, cid) for flow in ("a", "a/b", "a.b") for cid in ("b/c", "c", "é é", "z" * 300)}
    assert len(keys) == 12
    assert all(0 < len(k) <= MAX_KEY_LENGTH and all("!" <= c <= "~" for c in k) for k in keys)


async def test_a_save_is_durable_for_another_store_on_the_same_namespace() -> None:
    # Given two observers' stores over one namespace (two processes on one broker)
    kv = MemoryKeyValue("flows")
    writer, reader = KeyValueFlowStore(kv), KeyValueFlowStore(kv)
    instance = Instance("order", "c1", notices={"final": False})
    instance.wake_at = -math.inf
    # When one saves, then saves a newer snapshot
    await writer.save([instance])
    instance.notices["final"] = True
    instance.wake_at = None
    await writer.save([instance])
    # Then the other reads the newest one, and nothing is due
    (loaded,) = await reader.fetch("order", ["c1"])
    assert loaded.notices == {"final": True}
    assert await reader.due("order", 1e9, limit=10) == []


class UnreachableKeyValue(MemoryKeyValue):
    """A real in-memory store whose reads fail the way a broker outage or a dropped socket does."""

    def __init__(self, error: Exception) -> None:
        super().__init__("flows")
        self.error = error

    async def get(self, key: str) -> Entry | None:
        raise self.error


async def test_broker_outages_stay_broker_errors_so_the_observer_retries() -> None:
    with pytest.raises(BrokerUnavailable, match="down"):
        await KeyValueFlowStore(UnreachableKeyValue(BrokerUnavailable("down"))).fetch("order", ["c1"])
    with pytest.raises(BrokerUnavailable, match="reset"):
        await KeyValueFlowStore(UnreachableKeyValue(ConnectionResetError("reset"))).fetch("order", ["c1"])


async def test_an_unreadable_document_is_a_store_error_naming_its_key() -> None:
    kv = MemoryKeyValue("flows")
    await kv.put(instance_key("order", "c1"), b"{not json")
    with pytest.raises(FlowStoreError, match="f/order/c1"):
        await KeyValueFlowStore(kv).fetch("order", ["c1"])
