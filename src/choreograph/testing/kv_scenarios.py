"""Section K of the conformance suite — key-value stores — for backends that are a KeyValueProvider.

Every scenario asks the broker for a fresh namespace through
:meth:`~choreograph.core.kv.KeyValueProvider.key_value` and checks the
semantics :mod:`choreograph.core.kv` promises: revisions, compare-and-set that
writes nothing when it loses, size and name limits, no lost update when two
broker instances race, and durability across a reopen. A backend that is no
KeyValueProvider skips the section (the capability matrix shows it).

The race opens the second instance the way a child process would
(:meth:`~choreograph.testing.scenario.ConformanceBase.child_broker`), in this
process: its own connections, the same storage.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator

import pytest

from choreograph.core.broker import Broker
from choreograph.core.errors import ConfigurationError
from choreograph.core.kv import MAX_KEY_LENGTH, MAX_VALUE_BYTES, KeyConflict, KeyValueProvider, KeyValueStore
from choreograph.testing.child import open_broker
from choreograph.testing.scenario import ConformanceBase, not_applicable, scenario, weaker

ODD_KEYS = ("a", "schema:shop.order_placed/v1", "flow.42", "A-Z_0.9", "~!#$%&'()*+,:;<=>?@[\\]^`{|}", "x" * 200)
"""Keys every backend must hold as given, whatever its native key alphabet."""

MODEL_STEPS = 80
"""Operations of the seeded random run in K8."""

RACE_INCREMENTS = 12
"""Successful compare-and-set increments each of the two racers makes in K6."""


def provider(broker: Broker) -> KeyValueProvider:
    """The broker as a KeyValueProvider, or skip the scenario."""
    if not isinstance(broker, KeyValueProvider):
        pytest.skip(f"{type(broker).__name__} provides no key-value stores")
    return broker


def fresh_namespace() -> str:
    """A namespace no other scenario uses."""
    return f"conformance_{uuid.uuid4().hex[:12]}"


async def increment(store: KeyValueStore, key: str, times: int) -> int:
    """Add 1 to the decimal counter at ``key`` ``times`` times by read-and-CAS; return conflicts met."""
    conflicts = 0
    done = 0
    while done < times:
        entry = await store.get(key)
        current, revision = (int(entry.value), entry.revision) if entry else (0, 0)
        try:
            await store.put(key, str(current + 1).encode(), expect=revision)
        except KeyConflict:
            conflicts += 1
            continue
        done += 1
    return conflicts


class KeyValueScenarios(ConformanceBase):
    """Scenarios K1-K8."""

    @contextlib.asynccontextmanager
    async def kv_store(self, namespace: str | None = None) -> AsyncIterator[tuple[Broker, KeyValueStore]]:
        """A fresh broker and a store of ``namespace`` (default: a fresh one)."""
        async with self.broker() as broker:
            store = provider(broker).key_value(namespace or fresh_namespace())
            try:
                yield broker, store
            finally:
                await store.close()

    @scenario("K1", "Key-value: get, put, delete and keys(prefix) as documented")
    async def test_k01_get_put_delete_keys(self) -> None:
        async with self.kv_store() as (_, kv):
            assert await kv.get("missing") is None
            assert await kv.keys() == []
            for i, key in enumerate(ODD_KEYS):
                revision = await kv.put(key, f"v{i}".encode())
                assert revision > 0
                entry = await kv.get(key)
                assert entry is not None
                assert (entry.key, entry.value, entry.revision) == (key, f"v{i}".encode(), revision)
            assert await kv.keys() == sorted(ODD_KEYS)
            assert await kv.keys("schema:") == ["schema:shop.order_placed/v1"]
            assert await kv.keys("x" * 201) == []
            await kv.put("empty", b"")
            assert (await kv.get("empty") or pytest.fail("empty value lost")).value == b""
            assert await kv.delete("a") is True
            assert await kv.delete("a") is False
            assert await kv.get("a") is None
            assert "a" not in await kv.keys()
            assert await kv.delete("never-there") is False

    @scenario("K2", "Key-value: every write gives the key a larger revision, across delete and re-create")
    async def test_k02_revisions_grow(self) -> None:
        async with self.kv_store() as (_, kv):
            seen = [await kv.put("k", str(i).encode()) for i in range(5)]
            assert seen == sorted(seen)
            assert len(set(seen)) == 5
            await kv.put("other", b"x")  # another key's writes never lower this one's revision
            assert await kv.delete("k", expect=seen[-1]) is True
            again = await kv.put("k", b"back", expect=0)
            assert again > seen[-1]
            assert await kv.get("k") == await kv.get("k")
            entry = await kv.get("k")
            assert entry is not None
            assert entry.revision == again

    @scenario("K3", "Key-value: a compare-and-set that loses raises KeyConflict and writes nothing")
    async def test_k03_conflicts_write_nothing(self) -> None:
        async with self.kv_store() as (_, kv):
            with pytest.raises(KeyConflict) as missing:
                await kv.put("k", b"x", expect=1)
            assert (missing.value.expected, missing.value.actual) == (1, 0)
            assert await kv.get("k") is None
            first = await kv.put("k", b"one", expect=0)
            with pytest.raises(KeyConflict) as exists:
                await kv.put("k", b"two", expect=0)
            assert (exists.value.expected, exists.value.actual, exists.value.key) == (0, first, "k")
            with pytest.raises(KeyConflict):
                await kv.put("k", b"two", expect=first + 1)
            with pytest.raises(KeyConflict):
                await kv.delete("k", expect=first + 1)
            with pytest.raises(KeyConflict):
                await kv.delete("gone", expect=1)
            entry = await kv.get("k")
            assert entry is not None
            assert (entry.value, entry.revision) == (b"one", first)
            second = await kv.put("k", b"two", expect=first)
            assert second > first
            assert await kv.delete("k", expect=second) is True
            with pytest.raises(KeyConflict):
                await kv.put("k", b"three", expect=second)
            assert await kv.keys() == []

    @scenario("K4", "Key-value: values up to MAX_VALUE_BYTES round-trip unchanged; larger ones are refused")
    async def test_k04_value_sizes(self) -> None:
        async with self.kv_store() as (_, kv):
            largest = bytes(range(256)) * (MAX_VALUE_BYTES // 256)
            assert len(largest) == MAX_VALUE_BYTES
            await kv.put("big", largest)
            assert (await kv.get("big") or pytest.fail("big value lost")).value == largest
            binary = b"\x00\xff\r\n\x00"
            await kv.put("binary", binary)
            assert (await kv.get("binary") or pytest.fail("binary value lost")).value == binary
            with pytest.raises(ConfigurationError, match="limit"):
                await kv.put("too-big", largest + b"!")
            assert await kv.get("too-big") is None

    @scenario("K5", "Key-value: invalid keys and namespaces are ConfigurationErrors")
    async def test_k05_bad_names(self) -> None:
        async with self.kv_store() as (broker, kv):
            for key in ("", "has space", "tab\t", "é", "x" * (MAX_KEY_LENGTH + 1), "new\nline"):
                for attempt in (kv.get(key), kv.put(key, b"v"), kv.delete(key)):
                    with pytest.raises(ConfigurationError):
                        await attempt
            for namespace in ("", "Upper", "dash-ed", "dot.ted", "n" * 65, "spa ce", "ünï"):
                with pytest.raises(ConfigurationError):
                    provider(broker).key_value(namespace)
            assert await kv.keys() == []

    @scenario("K8", "Key-value: a seeded random run of writes, deletes and reads agrees with a model")
    async def test_k08_random_operations_agree_with_a_model(self) -> None:
        rng = random.Random(8)
        live: dict[str, tuple[bytes, int]] = {}
        last: dict[str, int] = {}  # every key's highest revision so far: a new one must be higher
        async with self.kv_store() as (_, kv):
            for step in range(MODEL_STEPS):
                key = rng.choice(("a", "b", "a/1", "a/2"))
                current = live[key][1] if key in live else 0
                expect = rng.choice((None, 0, current, current, current + 1, max(0, last.get(key, 0) - 1)))
                wins = expect is None or expect == current
                what = f"step {step}: {key!r} expect={expect} (current {current})"
                if rng.random() < 0.7:
                    value = f"{step}".encode() * rng.randint(0, 3)
                    if wins:
                        revision = await kv.put(key, value, expect=expect)
                        assert revision > last.get(key, 0), f"{what}: revision {revision} did not grow"
                        live[key], last[key] = (value, revision), revision
                    else:
                        with pytest.raises(KeyConflict) as lost:
                            await kv.put(key, value, expect=expect)
                        assert lost.value.actual == current, what
                elif wins:
                    assert await kv.delete(key, expect=expect) is (key in live), what
                    live.pop(key, None)
                else:
                    with pytest.raises(KeyConflict):
                        await kv.delete(key, expect=expect)
                entry = await kv.get(key)
                assert (None if entry is None else (entry.value, entry.revision)) == live.get(key), what
                prefix = rng.choice(("", "a", "a/", "b", "c"))
                assert await kv.keys(prefix) == sorted(k for k in live if k.startswith(prefix)), what

    @scenario(
        "K6",
        "Key-value: two broker instances see each other's writes at once and lose no update racing CAS increments",
        weaker("cross_process", "both racers use stores of one broker instance"),
    )
    async def test_k06_racing_increments(self) -> None:
        namespace = fresh_namespace()
        async with self.kv_store(namespace) as (broker, kv):
            child = self.child_broker(broker) if self.capabilities.cross_process else None
            other = broker if child is None else await open_broker(child.opener, child.url)
            try:
                rival = provider(other).key_value(namespace)
                # a write is visible to the other instance as soon as put returned (no stale read)
                written = await kv.put("seen", b"1")
                entry = await rival.get("seen")
                assert entry is not None, "the other instance does not see a write that returned"
                assert entry.revision == written
                assert await rival.put("seen", b"2", expect=written) > written
                assert (await kv.get("seen") or pytest.fail("lost")).value == b"2"
                async with asyncio.timeout(self.timeout * 3):
                    conflicts = await asyncio.gather(
                        increment(kv, "counter", RACE_INCREMENTS), increment(rival, "counter", RACE_INCREMENTS)
                    )
                for reader in (kv, rival):
                    entry = await reader.get("counter")
                    assert entry is not None, "the counter vanished"
                    assert int(entry.value) == 2 * RACE_INCREMENTS, f"lost updates (conflicts met: {conflicts})"
                await rival.close()
            finally:
                if other is not broker:
                    await other.close()

    @scenario(
        "K7",
        "Key-value: entries and revisions survive closing and reopening the broker",
        not_applicable(
            "persistent",
            "with `cross_process`, a broker opened after the first one closed reads them (the server keeps them)",
        ),
    )
    async def test_k07_survives_reopen(self) -> None:
        namespace = fresh_namespace()
        broker = await self.make_broker()
        try:
            kv = provider(broker).key_value(namespace)
            child = self.child_broker(broker) if self.capabilities.cross_process else None
            if not self.capabilities.persistent and child is None:
                pytest.skip("neither persistent nor shared: nothing outlives the broker")
            kept = await kv.put("kept", b"value")
            await kv.put("dropped", b"value")
            await kv.delete("dropped")
            await kv.close()
            if self.capabilities.persistent:
                broker = await self.reopen_broker(broker)
            else:
                assert child is not None
                await broker.close()
                broker = await open_broker(child.opener, child.url)
            kv = provider(broker).key_value(namespace)
            entry = await kv.get("kept")
            assert entry is not None
            assert (entry.value, entry.revision) == (b"value", kept)
            assert await kv.keys() == ["kept"]
            with pytest.raises(KeyConflict):
                await kv.put("kept", b"stale", expect=kept + 1)
            assert await kv.put("kept", b"new", expect=kept) > kept
            await kv.close()
        finally:
            await broker.close()
