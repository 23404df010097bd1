"""Key-value namespaces in Redis hashes (the :class:`~choreograph.core.kv.KeyValueProvider` capability).

A namespace ``N`` is two hashes under the broker's prefix, both with the hash
tag ``{kv:N}`` so they share one Redis Cluster slot (no topic can use that tag:
topic names hold no ``:``):

=================================  ==========================================
``<prefix>:{kv:N}:values``         key -> value bytes (only existing keys)
``<prefix>:{kv:N}:revisions``      key -> last revision; kept after a delete
                                   so a re-created key continues from it
=================================  ==========================================

Every write is one Lua script that reads the revision, checks ``expect`` and
writes, atomically on the server, so compare-and-set holds across processes
and a failed condition writes nothing. A read is one script too, so value and
revision always belong together. Durability is the server's (``appendfsync``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from choreograph.core.kv import Entry, KeyConflict, check_key, check_namespace, check_value

from .config import RedisConfig
from .translation import text, translated

GET: Final = """
-- KEYS: values, revisions.  ARGV: key.  Returns {value, revision} or {} when the key does not exist.
local value = redis.call('HGET', KEYS[1], ARGV[1])
if not value then return {} end
return {value, redis.call('HGET', KEYS[2], ARGV[1])}
"""

PUT: Final = """
-- KEYS: values, revisions.  ARGV: key, value, expected revision ('' for none).
-- Returns {1, new revision}, or {0, actual revision (0: absent)} when the expectation fails.
local live = redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1
local last = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local actual = 0
if live then actual = last end
if ARGV[3] ~= '' and tonumber(ARGV[3]) ~= actual then return {0, actual} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], last + 1)
return {1, last + 1}
"""

DELETE: Final = """
-- KEYS: values, revisions.  ARGV: key, expected revision ('' for none).
-- Returns {1, removed (1/0)}, or {0, actual revision (0: absent)} when the expectation fails.
local live = redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1
local actual = 0
if live then actual = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0') end
if ARGV[2] ~= '' and tonumber(ARGV[2]) ~= actual then return {0, actual} end
return {1, redis.call('HDEL', KEYS[1], ARGV[1])}
"""


class RedisKeyValue:
    """A :class:`~choreograph.core.kv.KeyValueStore` for one namespace, in two Redis hashes."""

    def __init__(self, client: Any, prefix: str, namespace: str, check_open: Callable[[], None]) -> None:
        self.namespace = check_namespace(namespace)
        self._client = client
        self._check_open = check_open
        base = f"{prefix}:{{kv:{namespace}}}"
        self._keys = [f"{base}:values", f"{base}:revisions"]
        self._get = client.register_script(GET)
        self._put = client.register_script(PUT)
        self._delete = client.register_script(DELETE)

    async def get(self, key: str) -> Entry | None:
        check_key(key)
        self._check_open()
        async with translated(f"read key {key!r} of {self.namespace!r}"):
            found = await self._get(keys=self._keys, args=[key])
        return Entry(key, bytes(found[0]), int(found[1])) if found else None

    async def put(self, key: str, value: bytes, *, expect: int | None = None) -> int:
        check_value(check_key(key), value)
        self._check_open()
        async with translated(f"write key {key!r} of {self.namespace!r}"):
            done, revision = await self._put(keys=self._keys, args=[key, bytes(value), _expect(expect)])
        if not done:
            raise KeyConflict(self.namespace, key, expect or 0, int(revision))
        return int(revision)

    async def delete(self, key: str, *, expect: int | None = None) -> bool:
        check_key(key)
        self._check_open()
        async with translated(f"delete key {key!r} of {self.namespace!r}"):
            done, outcome = await self._delete(keys=self._keys, args=[key, _expect(expect)])
        if not done:
            raise KeyConflict(self.namespace, key, expect or 0, int(outcome))
        return bool(outcome)

    async def keys(self, prefix: str = "") -> list[str]:
        self._check_open()
        # HKEYS, not HSCAN MATCH: a glob would need the prefix's own * ? [ escaped, and namespaces are small.
        async with translated(f"list keys of {self.namespace!r}"):
            found = await self._client.hkeys(self._keys[0])
        return sorted(k for k in map(text, found) if k.startswith(prefix))

    async def close(self) -> None:
        return None


def _expect(expect: int | None) -> str:
    return "" if expect is None else str(expect)


class KeyValueHashes:
    """The :class:`~choreograph.core.kv.KeyValueProvider` half of :class:`RedisBroker`."""

    client: Any
    config: RedisConfig

    def check_open(self) -> None:
        raise NotImplementedError  # provided by RedisBroker

    def key_value(self, namespace: str) -> RedisKeyValue:
        """The store for ``namespace``: two hashes under this broker's prefix, shared by every client."""
        return RedisKeyValue(self.client, self.config.prefix, namespace, self.check_open)
