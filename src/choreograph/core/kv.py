"""Key-value stores a broker provides, so shared state lives where the log lives.

Schemas, flow state, the audit trail and dead-letter notes must be shared by
every process of a deployment. Rather than a second database, a backend that
can hold small documents offers a :class:`KeyValueStore` per namespace through
the :class:`KeyValueProvider` capability (a NATS KV bucket, a Redis hash, a
Kafka compacted topic, a SQLite table, a dict in memory). Higher-level stores
(the schema registry's, the observer's) are written once against this protocol.

Semantics every implementation keeps:

* **Revisions.** Every write of a key gives it a new revision, an ``int`` > 0
  that only grows for that key. A key that does not exist has no revision.
* **Compare-and-set.** ``put(key, value, expect=r)`` succeeds only if the key's
  current revision is ``r``; ``expect=0`` means "only if the key does not exist".
  A failed condition raises :class:`KeyConflict` and writes nothing. Two
  processes racing on one key therefore end with exactly one winner; the loser
  reads again and decides. ``expect=None`` writes unconditionally.
* **Read-your-writes** in one process; other processes see a write once
  ``put`` has returned (no stale reads after a successful write returns).
* **Keys** are non-empty strings of printable ASCII without spaces, at most
  200 characters; values are bytes up to 512 KiB. Anything else is a
  :class:`~choreograph.core.errors.ConfigurationError` naming the key.
* ``keys(prefix)`` lists current keys in ascending order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from choreograph.core.errors import ChoreographError, ConfigurationError

MAX_KEY_LENGTH = 200
MAX_VALUE_BYTES = 512 * 1024
_NAMESPACE_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


class KeyConflict(ChoreographError):
    """A compare-and-set write lost: the key's revision was not the expected one."""

    def __init__(self, namespace: str, key: str, expected: int, actual: int) -> None:
        state = "does not exist" if actual == 0 else f"is at revision {actual}"
        super().__init__(
            f"{namespace}/{key}: expected revision {expected} but the key {state}; read it again and retry"
        )
        self.namespace = namespace
        self.key = key
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True, slots=True)
class Entry:
    """A key's current value and revision."""

    key: str
    value: bytes
    revision: int


@runtime_checkable
class KeyValueStore(Protocol):
    """One namespace of small shared documents with per-key compare-and-set."""

    async def get(self, key: str) -> Entry | None:
        """The key's current entry, or None if it does not exist."""
        ...

    async def put(self, key: str, value: bytes, *, expect: int | None = None) -> int:
        """Write the key and return its new revision; see the module for ``expect``."""
        ...

    async def delete(self, key: str, *, expect: int | None = None) -> bool:
        """Remove the key; False if it did not exist. ``expect`` as for :meth:`put`."""
        ...

    async def keys(self, prefix: str = "") -> list[str]:
        """Current keys starting with ``prefix``, ascending."""
        ...

    async def close(self) -> None:
        """Release what this store holds; the broker stays open."""
        ...


@runtime_checkable
class KeyValueProvider(Protocol):
    """Capability: the backend keeps key-value namespaces next to its log."""

    def key_value(self, namespace: str) -> KeyValueStore:
        """The store for ``namespace`` (``[a-z0-9_]``, at most 64 characters)."""
        ...


def check_namespace(namespace: str) -> str:
    """Refuse a namespace name that some backend could not hold."""
    # ASCII only: str.islower()/isdigit() would also let "ü" or "²" through, which NATS and Kafka refuse.
    if not (0 < len(namespace) <= 64) or not all(c in _NAMESPACE_CHARACTERS for c in namespace):
        raise ConfigurationError(f"key-value namespace {namespace!r} is invalid: use 1-64 characters of a-z, 0-9 and _")
    return namespace


def check_key(key: str) -> str:
    """Refuse a key that some backend could not hold (see the module's rules)."""
    if not (0 < len(key) <= MAX_KEY_LENGTH) or not all("!" <= c <= "~" for c in key):
        raise ConfigurationError(
            f"key {key[:60]!r} is invalid: use 1-{MAX_KEY_LENGTH} printable ASCII characters without spaces"
        )
    return key


def check_value(key: str, value: bytes) -> bytes:
    """Refuse a value over the size every backend can hold."""
    if len(value) > MAX_VALUE_BYTES:
        raise ConfigurationError(
            f"value for key {key!r} is {len(value)} bytes; the limit is {MAX_VALUE_BYTES} — store large data elsewhere"
        )
    return value


class MemoryKeyValue:
    """A :class:`KeyValueStore` in one process's memory (memory broker, tests)."""

    def __init__(self, namespace: str = "default") -> None:
        self.namespace = check_namespace(namespace)
        self._entries: dict[str, Entry] = {}
        self._revisions: dict[str, int] = {}

    async def get(self, key: str) -> Entry | None:
        return self._entries.get(check_key(key))

    async def put(self, key: str, value: bytes, *, expect: int | None = None) -> int:
        check_value(check_key(key), value)
        self._check(key, expect)
        # Revisions keep growing across delete and re-create, as on NATS KV.
        revision = self._revisions.get(key, 0) + 1
        self._revisions[key] = revision
        self._entries[key] = Entry(key, bytes(value), revision)
        return revision

    async def delete(self, key: str, *, expect: int | None = None) -> bool:
        self._check(check_key(key), expect)
        return self._entries.pop(key, None) is not None

    async def keys(self, prefix: str = "") -> list[str]:
        return sorted(k for k in self._entries if k.startswith(prefix))

    async def close(self) -> None:
        return None

    def _check(self, key: str, expect: int | None) -> None:
        if expect is None:
            return
        current = self._entries.get(key)
        actual = current.revision if current else 0
        if actual != expect:
            raise KeyConflict(self.namespace, key, expect, actual)
