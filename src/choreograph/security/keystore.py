"""Data keys per subject, for envelope encryption and crypto-shredding.

Each subject (a customer, an account: whatever the envelope's ``subject``,
else its partition key, names) has its own AES-256 data keys, numbered from 1.
New events use the subject's current version; :meth:`DataKeyStore.rotate`
adds a version without touching what was written with older ones (they stay
readable); :meth:`DataKeyStore.forget` deletes every version, so every event
of that subject, wherever it was copied (log, dead letters, backups), can no
longer be read: erasure in an append-only log.

Stored keys are wrapped (AES-256-GCM) under a master key that never leaves
the process; the store holds only wrapped keys, under a hash of the subject
(a subject may be personal data). Implementations: :class:`MemoryKeyStore`
(tests), :class:`FileKeyStore` (a directory), :class:`KvKeyStore` (a broker's
key-value namespace, shared by every process). Each caches unwrapped keys for
``cache_ttl`` seconds: a key forgotten by another process stops being usable
here within that time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol, cast, runtime_checkable

import orjson

from choreograph.core.errors import ConfigurationError
from choreograph.core.kv import KeyConflict, KeyValueProvider, KeyValueStore
from choreograph.security._crypto import AESGCM, InvalidTag
from choreograph.security.canonical import b64
from choreograph.security.errors import DecryptError

DEFAULT_CACHE_TTL: Final = 30.0
MASTER_KEY_ENV: Final = "CHOREOGRAPH_MASTER_KEY"


@dataclass(frozen=True, slots=True)
class DataKey:
    """One version of a subject's AES-256 key (``repr`` omits the key)."""

    subject: str
    version: int
    key: bytes = field(repr=False)


@runtime_checkable
class DataKeyStore(Protocol):
    """Where data keys live. Safe to call concurrently from one event loop."""

    async def current(self, subject: str) -> DataKey:
        """The key new events of ``subject`` are encrypted with; created on first use."""
        ...

    async def get(self, subject: str, version: int) -> DataKey | None:
        """Version ``version`` of ``subject``'s key, or None if it never existed or was forgotten."""
        ...

    async def rotate(self, subject: str) -> DataKey:
        """Add a new current version for ``subject``; older versions keep decrypting."""
        ...

    async def forget(self, subject: str) -> bool:
        """Delete every version of ``subject``'s key (crypto-shredding). False if there was none."""
        ...


def master_key(*, path: str | Path | None = None, env: str | None = MASTER_KEY_ENV) -> bytes:
    """Read a 32-byte master key: a file of exactly 32 bytes, or base64url text (file or environment variable).

    Create one with ``head -c 32 /dev/urandom > master.key`` (mode 0600) or
    :func:`new_master_key`. Errors never show the key.
    """
    raw: bytes | None = None
    where = "master key"
    if path is not None:
        where = f"master key file {str(path)!r}"
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"{where} cannot be read: {type(exc).__name__}") from None
        if len(raw) == 32:
            return raw  # raw bytes: never strip them (a key may end in a whitespace byte)
    elif env is not None and os.environ.get(env):
        where = f"${env}"
        raw = os.environ[env].encode("utf-8", "surrogateescape")
    if raw is None:
        raise ConfigurationError(f"no master key: give a key file or set ${env}")
    text = raw.strip()
    try:
        key = base64.b64decode(text + b"=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise ConfigurationError(f"{where} must be 32 bytes, or their base64url text")  # never echo it
    return key


def new_master_key() -> str:
    """A fresh master key as base64url text."""
    return b64(os.urandom(32))


class _Cached:
    """Wrapping and the cache shared by the implementations."""

    def __init__(self, master: bytes, cache_ttl: float) -> None:
        if len(master) != 32:
            raise ConfigurationError("the master key must be 32 bytes")
        self._master = AESGCM(master)
        self._ttl = cache_ttl
        self._cache: dict[tuple[str, int], tuple[float, DataKey]] = {}
        self._current: dict[str, tuple[float, int]] = {}

    @staticmethod
    def name(subject: str) -> str:
        """Where a subject's keys are stored: a hash, never the subject itself."""
        return hashlib.sha256(subject.encode("utf-8", "surrogatepass")).hexdigest()[:40]

    def wrap(self, subject: str, version: int, key: bytes) -> str:
        nonce = os.urandom(12)
        return b64(nonce + self._master.encrypt(nonce, key, f"{self.name(subject)}/{version}".encode()))

    def unwrap(self, subject: str, version: int, text: str) -> bytes:
        try:
            blob = base64.urlsafe_b64decode(str(text) + "=" * (-len(str(text)) % 4))
            return self._master.decrypt(blob[:12], blob[12:], f"{self.name(subject)}/{version}".encode())
        except InvalidTag:
            raise DecryptError(f"a data key of a subject cannot be unwrapped: wrong master key ({version=})") from None
        except (binascii.Error, ValueError):
            raise DecryptError(f"a data key record is damaged ({version=})") from None

    def cached(self, subject: str, version: int) -> DataKey | None:
        hit = self._cache.get((subject, version))
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        return None

    def remember(self, key: DataKey, *, current: bool = False) -> DataKey:
        expiry = time.monotonic() + self._ttl
        self._cache[(key.subject, key.version)] = (expiry, key)
        if current:
            self._current[key.subject] = (expiry, key.version)
        return key

    def cached_current(self, subject: str) -> DataKey | None:
        hit = self._current.get(subject)
        if hit is not None and hit[0] > time.monotonic():
            return self.cached(subject, hit[1])
        return None

    def drop(self, subject: str) -> None:
        self._current.pop(subject, None)
        for k in [k for k in self._cache if k[0] == subject]:
            del self._cache[k]


def _parse(doc_bytes: bytes) -> dict[str, object]:
    try:
        doc = orjson.loads(doc_bytes)
    except orjson.JSONDecodeError:
        raise DecryptError("a data key record is damaged") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), dict) or not isinstance(doc.get("current"), int):
        raise DecryptError("a data key record is damaged")
    return doc


class _DocumentStore(_Cached):
    """A store of one JSON document per subject ``{"current": n, "keys": {"n": wrapped}}``."""

    async def _read(self, name: str) -> tuple[dict[str, object] | None, int]:
        raise NotImplementedError

    async def _write(self, name: str, doc: dict[str, object], revision: int) -> bool:
        """Write if the document is still at ``revision`` (0: absent); False if it changed meanwhile."""
        raise NotImplementedError

    async def _delete(self, name: str) -> bool:
        raise NotImplementedError

    async def current(self, subject: str) -> DataKey:
        hit = self.cached_current(subject)
        if hit is not None:
            return hit
        while True:
            doc, _ = await self._read(self.name(subject))
            if doc is not None:
                version = int(doc["current"])  # type: ignore[call-overload]
                wrapped = cast("dict[str, object]", doc["keys"]).get(str(version))  # _parse checked it is a dict
                if not isinstance(wrapped, str):
                    raise DecryptError("a data key record is damaged (no current key)")
                return self.remember(DataKey(subject, version, self.unwrap(subject, version, wrapped)), current=True)
            key = os.urandom(32)
            if await self._write(self.name(subject), {"current": 1, "keys": {"1": self.wrap(subject, 1, key)}}, 0):
                return self.remember(DataKey(subject, 1, key), current=True)

    async def get(self, subject: str, version: int) -> DataKey | None:
        hit = self.cached(subject, version)
        if hit is not None:
            return hit
        doc, _ = await self._read(self.name(subject))
        if doc is None:
            return None
        wrapped = cast("dict[str, object]", doc["keys"]).get(str(version))  # _parse checked it is a dict
        if not isinstance(wrapped, str):
            return None
        return self.remember(DataKey(subject, version, self.unwrap(subject, version, wrapped)))

    async def rotate(self, subject: str) -> DataKey:
        while True:
            doc, revision = await self._read(self.name(subject))
            keys: dict[str, object] = {} if doc is None else dict(doc["keys"])  # type: ignore[call-overload]
            version = 1 if doc is None else int(doc["current"]) + 1  # type: ignore[call-overload]
            key = os.urandom(32)
            keys[str(version)] = self.wrap(subject, version, key)
            if await self._write(self.name(subject), {"current": version, "keys": keys}, revision):
                self.drop(subject)
                return self.remember(DataKey(subject, version, key), current=True)

    async def forget(self, subject: str) -> bool:
        self.drop(subject)
        return await self._delete(self.name(subject))


class FileKeyStore(_DocumentStore):
    """Data keys in a directory, one file per subject (mode 0600). One process writes at a time."""

    def __init__(self, directory: str | Path, master: bytes, *, cache_ttl: float = DEFAULT_CACHE_TTL) -> None:
        super().__init__(master, cache_ttl)
        self.directory = Path(directory)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    async def _read(self, name: str) -> tuple[dict[str, object] | None, int]:
        try:
            raw = (self.directory / f"{name}.json").read_bytes()
        except FileNotFoundError:
            return None, 0
        return _parse(raw), 1

    async def _write(self, name: str, doc: dict[str, object], revision: int) -> bool:
        target = self.directory / f"{name}.json"
        temporary = self.directory / f".{name}.{os.getpid()}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(orjson.dumps(doc))
            out.flush()
            os.fsync(out.fileno())
        if revision == 0:
            try:
                os.link(temporary, target)  # only if absent: another writer's first key wins
            except FileExistsError:
                return False
            finally:
                temporary.unlink()
            return True
        os.replace(temporary, target)
        return True

    async def _delete(self, name: str) -> bool:
        try:
            (self.directory / f"{name}.json").unlink()
        except FileNotFoundError:
            return False
        return True


class MemoryKeyStore(_DocumentStore):
    """Data keys in this process's memory (tests, benchmarks)."""

    def __init__(self, master: bytes | None = None, *, cache_ttl: float = DEFAULT_CACHE_TTL) -> None:
        super().__init__(master or os.urandom(32), cache_ttl)
        self._docs: dict[str, tuple[bytes, int]] = {}

    async def _read(self, name: str) -> tuple[dict[str, object] | None, int]:
        found = self._docs.get(name)
        return (None, 0) if found is None else (_parse(found[0]), found[1])

    async def _write(self, name: str, doc: dict[str, object], revision: int) -> bool:
        found = self._docs.get(name)
        if (found[1] if found else 0) != revision:
            return False
        self._docs[name] = (orjson.dumps(doc), revision + 1)
        return True

    async def _delete(self, name: str) -> bool:
        return self._docs.pop(name, None) is not None


class KvKeyStore(_DocumentStore):
    """Data keys in a broker's key-value namespace (:class:`choreograph.core.kv.KeyValueStore`), shared by all."""

    def __init__(self, kv: KeyValueStore, master: bytes, *, cache_ttl: float = DEFAULT_CACHE_TTL) -> None:
        super().__init__(master, cache_ttl)
        self._kv = kv

    @classmethod
    def for_broker(
        cls, broker: object, master: bytes, *, namespace: str = "data_keys", cache_ttl: float = DEFAULT_CACHE_TTL
    ) -> KvKeyStore:
        """The store in ``broker``'s key-value namespace; ConfigurationError if the backend keeps none."""
        if not isinstance(broker, KeyValueProvider):
            raise ConfigurationError(
                f"{type(broker).__name__} keeps no key-value store; use a FileKeyStore, or a backend that does"
            )
        return cls(broker.key_value(namespace), master, cache_ttl=cache_ttl)

    async def _read(self, name: str) -> tuple[dict[str, object] | None, int]:
        entry = await self._kv.get(name)
        return (None, 0) if entry is None else (_parse(entry.value), entry.revision)

    async def _write(self, name: str, doc: dict[str, object], revision: int) -> bool:
        try:
            await self._kv.put(name, orjson.dumps(doc), expect=revision)
        except KeyConflict:
            return False
        return True

    async def _delete(self, name: str) -> bool:
        return await self._kv.delete(name)
