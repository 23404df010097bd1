"""Key-value namespaces in JetStream KV buckets (the :class:`~choreograph.core.kv.KeyValueProvider` capability).

A namespace ``N`` is the bucket ``<prefix>_kv_N`` (history 1, the broker's
storage and replicas, created on first use). A key's revision is the bucket
stream's sequence of its last write, so it only grows, across delete and
re-create too. Compare-and-set is JetStream's own: ``expect=0`` is
``KeyValue.create`` (which also re-creates a deleted key), ``expect=r`` is
``update(last=r)`` / ``delete(last=r)``, checked by the server against the
key's last sequence; a refusal (``KeyWrongLastSequenceError``, API errors
10071/10164) becomes :class:`~choreograph.core.kv.KeyConflict` and writes
nothing. Reads go to the stream leader (the bucket is not ``allow_direct``),
so a write that returned is seen by every process.

Keys may hold any printable ASCII, NATS keys only ``[-/_=.A-Za-z0-9]``: every
other character (``=`` and ``.`` included) is written as ``=XX``, its hex
code, which is reversible and never forms a wildcard or an empty token.

One corner is looser than the protocol: a deleted key's tombstone has a
sequence too, and ``update(last=<that sequence>)`` succeeds although the key
does not exist. No call of this module ever returns a tombstone's sequence
as a revision, so only a guessed ``expect`` can meet it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final

import nats.js.errors
from nats.js import api
from nats.js.client import JetStreamContext
from nats.js.kv import KeyValue

from choreograph.brokers.nats.config import NatsConfig
from choreograph.brokers.nats.translation import translated
from choreograph.core.kv import Entry, KeyConflict, check_key, check_namespace, check_value

_STREAM_IN_USE: Final = 10058
_WRONG_LAST_SEQUENCE: Final = (10071, 10164)
_PLAIN: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_/")


def encode_key(key: str) -> str:
    """Our key as a NATS KV key (reversible; see the module)."""
    return "".join(c if c in _PLAIN else f"={ord(c):02X}" for c in key)


def decode_key(text: str) -> str:
    """Invert :func:`encode_key`."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "=":
            out.append(chr(int(text[i + 1 : i + 3], 16)))
            i += 3
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


class NatsKeyValue:
    """A :class:`~choreograph.core.kv.KeyValueStore` for one namespace, a JetStream KV bucket."""

    def __init__(self, ready: Callable[[], Awaitable[JetStreamContext]], config: NatsConfig, namespace: str) -> None:
        self.namespace = check_namespace(namespace)
        self.bucket = f"{config.prefix}_kv_{namespace}"
        self._ready = ready
        storage = api.StorageType.FILE if config.storage == "file" else api.StorageType.MEMORY
        self._config = api.KeyValueConfig(bucket=self.bucket, history=1, storage=storage, replicas=config.replicas)
        self._kv: KeyValue | None = None
        self._lock = asyncio.Lock()

    async def get(self, key: str) -> Entry | None:
        check_key(key)
        kv = await self._bucket()
        with translated(f"read key {key!r} of {self.bucket}"):
            try:
                found = await kv.get(encode_key(key))
            except nats.js.errors.KeyNotFoundError:  # also a deleted key
                return None
        return Entry(key, bytes(found.value or b""), int(found.revision or 0))

    async def put(self, key: str, value: bytes, *, expect: int | None = None) -> int:
        check_value(check_key(key), value)
        kv = await self._bucket()
        subject_key, data = encode_key(key), bytes(value)
        with translated(f"write key {key!r} of {self.bucket}"):
            try:
                if expect is None:
                    return await kv.put(subject_key, data)
                if expect == 0:
                    return await kv.create(subject_key, data)
                return await kv.update(subject_key, data, last=expect)
            except nats.js.errors.KeyWrongLastSequenceError:
                pass
        raise await self._conflict(key, expect)

    async def delete(self, key: str, *, expect: int | None = None) -> bool:
        check_key(key)
        kv = await self._bucket()
        while True:
            current = await self.get(key)
            actual = current.revision if current else 0
            if expect is not None and expect != actual:
                raise KeyConflict(self.namespace, key, expect, actual)
            if current is None:
                return False
            with translated(f"delete key {key!r} of {self.bucket}"):
                try:
                    # Conditional even without ``expect``: so the answer "it existed" is exact.
                    await kv.delete(encode_key(key), last=actual)
                    return True
                except nats.js.errors.APIError as exc:
                    if exc.err_code not in _WRONG_LAST_SEQUENCE:
                        raise
            if expect is not None:
                raise await self._conflict(key, expect)
            # written meanwhile without an expectation: read again and delete what is there now

    async def keys(self, prefix: str = "") -> list[str]:
        kv = await self._bucket()
        with translated(f"list keys of {self.bucket}"):
            try:
                found = await kv.keys()
            except nats.js.errors.NoKeysError:
                return []
        return sorted(k for k in map(decode_key, found) if k.startswith(prefix))

    async def close(self) -> None:
        return None

    async def _bucket(self) -> KeyValue:
        js = await self._ready()  # raises BrokerClosed once the broker is closed
        if self._kv is None:
            async with self._lock:
                if self._kv is None:
                    with translated(f"create bucket {self.bucket}"):
                        try:
                            self._kv = await js.create_key_value(self._config)
                        except nats.js.errors.BadRequestError as exc:
                            if exc.err_code != _STREAM_IN_USE:
                                raise
                            self._kv = await js.key_value(self.bucket)  # exists with other settings: use it
        return self._kv

    async def _conflict(self, key: str, expect: int | None) -> KeyConflict:
        current = await self.get(key)
        return KeyConflict(self.namespace, key, expect or 0, current.revision if current else 0)


class KeyValueBuckets:
    """The :class:`~choreograph.core.kv.KeyValueProvider` half of :class:`NatsBroker`."""

    config: NatsConfig

    async def _ready(self) -> JetStreamContext:
        raise NotImplementedError  # provided by NatsBroker

    def key_value(self, namespace: str) -> NatsKeyValue:
        """The store for ``namespace``: the bucket ``<prefix>_kv_<namespace>``, shared by every client."""
        return NatsKeyValue(self._ready, self.config, namespace)
