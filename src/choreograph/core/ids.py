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


def _format(ms: int, rand_a: int, rand_b: int) -> str:
    value = (ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76
    value |= (rand_a & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand_b & 0x3FFF_FFFF_FFFF_FFFF
    return str(uuid.UUID(int=value))


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
            _counter = int.from_bytes(os.urandom(1), "big")  # random start, room to count
        _last_ms = ms
        rand_a = _counter
    return _format(ms, rand_a, int.from_bytes(os.urandom(8), "big"))


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

    Pure function: calling it again with the same arguments returns the same id.
    The timestamp is the parent's (or now if the parent is not a UUIDv7), so
    derived ids sort next to their cause.
    """
    digest = hashlib.blake2b(f"{parent_id}\x1f{scope}\x1f{position}".encode(), digest_size=10).digest()
    ms = id_time_ms(parent_id) or time.time_ns() // 1_000_000
    return _format(ms, int.from_bytes(digest[:2], "big"), int.from_bytes(digest[2:], "big"))
