"""Time-ordered identifiers (UUIDv7, RFC 9562).

``new_id()`` is monotonic within a process: ids created in the same millisecond
are ordered by a counter in ``rand_a``. ``derived_id()`` is deterministic: the
same (parent, scope, position) always yields the same id, carrying the parent's
timestamp so it stays near the parent in time order. Handlers use it so a re-run
after a crash emits the same ids and downstream inboxes drop the duplicates.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_counter = 0

# Random bits come from the OS CSPRNG, read 4 KiB at a time: one getrandom() call per id cost
# about a sixth of the time to publish an event.
_POOL_SIZE = 4096
_pool = b""
_pool_at = _POOL_SIZE


def _forget_pool() -> None:
    # a forked child must not hand out the parent's remaining random bytes again
    global _pool, _pool_at
    _pool, _pool_at = b"", _POOL_SIZE


os.register_at_fork(after_in_child=_forget_pool)


def _random64() -> int:
    """Return 64 random bits from the OS CSPRNG. Call with ``_lock`` held."""
    global _pool, _pool_at
    if _pool_at >= _POOL_SIZE:
        _pool, _pool_at = os.urandom(_POOL_SIZE), 0
    start = _pool_at
    _pool_at = start + 8
    return int.from_bytes(_pool[start : start + 8], "big")


def _format(ms: int, rand_a: int, rand_b: int) -> str:
    value = (ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76
    value |= (rand_a & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand_b & 0x3FFF_FFFF_FFFF_FFFF
    text = f"{value:032x}"  # the canonical 8-4-4-4-12 form, as str(uuid.UUID(int=value)) gives
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def new_id(now_ms: int | None = None) -> str:
    """Return a fresh UUIDv7 string, monotonic within this process. Thread-safe."""
    global _last_ms, _counter
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    with _lock:
        if ms <= _last_ms:
            ms = _last_ms
            _counter += 1
            if _counter > 0xFFF:  # counter exhausted: borrow the next millisecond
                ms += 1
                _counter = 0
        else:
            _counter = _random64() & 0xFF  # random start, room to count
        _last_ms = ms
        rand_a = _counter
        rand_b = _random64()
    return _format(ms, rand_a, rand_b)


def id_time_ms(event_id: str) -> int:
    """Return the millisecond timestamp embedded in a UUIDv7 (0 if not a UUIDv7)."""
    try:
        value = uuid.UUID(event_id).int
    except ValueError:
        return 0
    if (value >> 76) & 0xF != 7:
        return 0
    return value >> 80


def derived_id(parent_id: str, scope: str, position: int) -> str:
    """Return a UUIDv7 derived deterministically from (parent_id, scope, position).

    Pure function, for any parent id: calling it again with the same arguments
    returns the same id, whatever the time. The timestamp is the parent's when
    the parent is a UUIDv7, so derived ids sort next to their cause; for any
    other parent it is taken from a hash of the parent id, so it is the same
    on every run (and the same for every child of one parent).
    """
    # surrogatepass: a str from any source encodes (lone surrogates included), and distinct strs stay distinct
    parent = parent_id.encode("utf-8", "surrogatepass")
    digest = hashlib.blake2b(
        b"%b\x1f%b\x1f%d" % (parent, scope.encode("utf-8", "surrogatepass"), position), digest_size=10
    ).digest()
    ms = id_time_ms(parent_id) or _hashed_ms(parent)
    return _format(ms, int.from_bytes(digest[:2], "big"), int.from_bytes(digest[2:], "big"))


def _hashed_ms(parent: bytes) -> int:
    """A 48-bit timestamp taken from a hash of a parent id that carries none (not a UUIDv7)."""
    return int.from_bytes(hashlib.blake2b(parent, digest_size=6, person=b"choreograph-ms").digest(), "big")
