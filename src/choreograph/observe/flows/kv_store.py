"""Observer state in any broker's key-value store: one document per flow instance.

:class:`KeyValueFlowStore` implements :class:`~choreograph.observe.flows.store.FlowStore`
on a :class:`~choreograph.core.kv.KeyValueStore` namespace (``flows`` by
default): a NATS KV bucket, Redis, a Kafka compacted topic, a SQLite table.
Each instance is one JSON document ``{"state", "wake_at", "finished_at"}``
under ``f/<flow>/<correlation id>`` (``h/<flow>/<sha256 of the id>`` for an
id that is not printable ASCII without spaces, or too long for a key; a flow
name outside ``[A-Za-z0-9._-]`` is replaced by its hash the same way), so
``flows --state`` and ``flow show --state`` read it from every process.

Guarantees and what they cost (n = stored instances of the flow):

* Errors: a broker that cannot be reached raises a
  :class:`~choreograph.core.errors.BrokerError`, as the log does, so the
  observer retries; an unreadable document raises
  :class:`~choreograph.observe.flows.store.FlowStoreError`.
* :meth:`~KeyValueFlowStore.save` writes each instance atomically and is
  durable once it returns, but it is **not one transaction across
  instances**: a crash in the middle leaves some instances saved and others
  not. The observer settles the deliveries only after ``save`` returned, so
  the events are delivered again and re-applied; an instance that was saved
  recognizes them by (correlation id, event id) and counts them once, as
  after any crash. Writes run concurrently, 64 at a time.
* :meth:`~KeyValueFlowStore.fetch` reads one key per correlation id.
* :meth:`~KeyValueFlowStore.load` lists the flow's keys (one listing) and
  reads the page asked for, in key order (= correlation id order); ids
  stored under a hash are all read, then merged.
* :meth:`~KeyValueFlowStore.due` and :meth:`~KeyValueFlowStore.forget` **scan
  every instance of the flow** (a listing and n reads): there is no index on
  ``wake_at`` or ``finished_at``. The observer calls ``due`` only once more
  instances are open than it holds in memory (``max_open_instances``) and
  ``forget`` at most hourly, so the scans stay rare; a deployment with
  millions of open instances per flow is better served by the SQLite store.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, TypeVar

import orjson

from choreograph.core.errors import BrokerError, BrokerUnavailable, ChoreographError
from choreograph.core.kv import MAX_KEY_LENGTH, KeyValueStore
from choreograph.observe.flows.instance import Instance
from choreograph.observe.flows.store import FlowStoreError

NAMESPACE: Final = "flows"
"""The key-value namespace the observer uses unless told otherwise."""
CONCURRENCY: Final = 64
"""Reads or writes in flight at once."""
_PLAIN: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")

T = TypeVar("T")
U = TypeVar("U")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _flow_part(flow: str) -> str:
    return flow if flow and len(flow) <= 64 and set(flow) <= _PLAIN else "~" + _digest(flow)[:40]


def plain_prefix(flow: str) -> str:
    """Prefix of the keys of ``flow``'s instances stored under their own correlation id."""
    return f"f/{_flow_part(flow)}/"


def hashed_prefix(flow: str) -> str:
    """Prefix of the keys of ``flow``'s instances stored under a hash of their correlation id."""
    return f"h/{_flow_part(flow)}/"


def instance_key(flow: str, correlation_id: str) -> str:
    """The key of one instance's document."""
    key = plain_prefix(flow) + correlation_id
    if len(key) <= MAX_KEY_LENGTH and correlation_id and all("!" <= c <= "~" for c in correlation_id):
        return key
    return hashed_prefix(flow) + _digest(correlation_id)


def _encode(instance: Instance) -> bytes:
    wake = instance.wake_at
    # -inf (an unsent notice) is not JSON: stored as the string "-inf".
    wake_doc: float | str | None = "-inf" if wake is not None and math.isinf(wake) and wake < 0 else wake
    return orjson.dumps({"state": instance.to_dict(), "wake_at": wake_doc, "finished_at": instance.finished_at})


def _decode(key: str, raw: bytes) -> Instance:
    try:
        doc = orjson.loads(raw)
        instance = Instance.from_dict(doc["state"])
        wake = doc.get("wake_at")
        instance.wake_at = -math.inf if wake == "-inf" else (None if wake is None else float(wake))
        done = doc.get("finished_at")
        instance.finished_at = None if done is None else float(done)
    except (ValueError, TypeError, KeyError, AttributeError, orjson.JSONDecodeError) as exc:
        raise FlowStoreError(f"observer state {key!r} is not readable: {type(exc).__name__}: {exc}") from exc
    return instance


class KeyValueFlowStore:
    """A :class:`~choreograph.observe.flows.store.FlowStore` on a key-value store (see the module for costs).

    ``on_close`` (for a store that owns its broker) is awaited by :meth:`close`.
    """

    def __init__(
        self,
        kv: KeyValueStore,
        *,
        on_close: Callable[[], Awaitable[None]] | None = None,
        where: str = "the broker's key-value store",
    ) -> None:
        self.kv = kv
        self.where = where
        self._on_close = on_close
        self._closed = False

    async def _guard(self, action: str, work: Awaitable[T]) -> T:
        if self._closed:
            if asyncio.iscoroutine(work):
                work.close()
            raise FlowStoreError("the observer state store is closed")
        try:
            return await work
        except (FlowStoreError, BrokerError):
            raise  # a broker error stays one: the observer retries those (resubscribes, saves again)
        except OSError as exc:  # a client library's own connection error: as transient as a BrokerError
            raise BrokerUnavailable(f"cannot {action} observer state in {self.where}: {exc}") from exc
        except ChoreographError as exc:
            raise FlowStoreError(f"cannot {action} observer state in {self.where}: {exc}") from exc

    @staticmethod
    async def _gather(job: Callable[[U], Awaitable[T]], items: Sequence[U]) -> list[T]:
        """``job`` of every item, at most :data:`CONCURRENCY` at a time, results in order."""
        results: list[T] = []
        for start in range(0, len(items), CONCURRENCY):
            results += await asyncio.gather(*(job(item) for item in items[start : start + CONCURRENCY]))
        return results

    async def _read(self, keys: Sequence[str]) -> list[Instance]:
        async def one(key: str) -> Instance | None:
            entry = await self.kv.get(key)
            return None if entry is None else _decode(key, entry.value)

        found = await self._gather(one, keys)
        return [i for i in found if i is not None]

    async def _all(self, flow: str) -> list[Instance]:
        keys = [*await self.kv.keys(plain_prefix(flow)), *await self.kv.keys(hashed_prefix(flow))]
        return await self._read(keys)

    async def load(self, flow: str, *, after: str = "", limit: int | None = None) -> list[Instance]:
        """Return stored instances of ``flow`` by correlation id, from the first after ``after``; all by default."""

        async def work() -> list[Instance]:
            prefix = plain_prefix(flow)
            plain = [k for k in await self.kv.keys(prefix) if k[len(prefix) :] > after]
            hashed = [i for i in await self._read(await self.kv.keys(hashed_prefix(flow))) if i.correlation_id > after]
            # Plain keys sort as their ids do: read only as many as the page can use.
            wanted = plain if limit is None else plain[:limit]
            merged = sorted([*await self._read(wanted), *hashed], key=lambda i: i.correlation_id)
            return merged if limit is None else merged[:limit]

        return await self._guard("read", work())

    async def save(self, instances: Sequence[Instance]) -> None:
        """Write each instance (atomically per instance; see the module); durable once it returns."""

        async def work() -> None:
            latest = {(i.flow, i.correlation_id): i for i in instances}  # the last snapshot of each wins, as in SQL
            writes = [(instance_key(i.flow, i.correlation_id), _encode(i)) for i in latest.values()]
            await self._gather(lambda write: self.kv.put(*write), writes)

        if instances:
            await self._guard("write", work())

    async def fetch(self, flow: str, correlation_ids: Sequence[str]) -> list[Instance]:
        """Return the stored instances of ``flow`` among ``correlation_ids`` (one read each)."""
        keys = [instance_key(flow, cid) for cid in dict.fromkeys(correlation_ids)]
        return await self._guard("read", self._read(keys))

    async def due(
        self, flow: str, until: float, *, after: tuple[float, str] | None = None, limit: int
    ) -> list[Instance]:
        """Return up to ``limit`` instances with ``wake_at <= until``, by (wake_at, correlation id). Scans the flow."""

        async def work() -> list[Instance]:
            due = sorted(
                (
                    i
                    for i in await self._all(flow)
                    if i.wake_at is not None
                    and i.wake_at <= until
                    and (after is None or (i.wake_at, i.correlation_id) > after)
                ),
                key=lambda i: (i.wake_at, i.correlation_id),
            )
            return due[:limit]

        return await self._guard("read", work())

    async def forget(self, flow: str, finished_before: float) -> int:
        """Delete instances of ``flow`` that finished before ``finished_before``; return how many. Scans the flow."""

        async def work() -> int:
            old = [i for i in await self._all(flow) if i.finished_at is not None and i.finished_at < finished_before]
            deleted = await self._gather(lambda i: self.kv.delete(instance_key(i.flow, i.correlation_id)), old)
            return sum(1 for gone in deleted if gone)

        return await self._guard("write", work())

    async def close(self) -> None:
        """Release the key-value store (and the broker, if this store owns it). Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.kv.close()
        finally:
            if self._on_close is not None:
                await self._on_close()
