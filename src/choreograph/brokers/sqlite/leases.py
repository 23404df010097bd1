"""Partition leases: how members of a group, possibly in different processes, share partitions.

Each member heartbeats in a write transaction. A heartbeat:

1. records the member as alive and forgets members silent for longer than
   ``lease_timeout`` (crashed processes);
2. computes this member's fair share of the partitions — the live members
   sorted by id, the first ``partitions % members`` of them get one extra;
3. gives up partitions over its share (idle ones at once; ones with
   deliveries in flight are *drained*: no new fetches, released after their
   deliveries are settled) so a joining member gets some;
4. takes free or expired partitions up to its share;
5. extends the expiry of every lease it keeps.

Leases expire on wall-clock time (``time.time()``), the one clock every
process on the machine shares. Every change of membership or ownership bumps
the group's ``generation``, which other members poll cheaply to rebalance
early instead of waiting for their next heartbeat.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Set
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Ownership:
    """What a heartbeat decided: partitions held (including draining ones) and the group generation."""

    held: frozenset[int]
    draining: frozenset[int]
    generation: int


def bump_generation(conn: sqlite3.Connection, topic: str, group: str) -> None:
    """Tell the other members that membership or ownership changed."""
    conn.execute(
        "INSERT INTO groups (topic, grp, generation) VALUES (?, ?, 1)"
        " ON CONFLICT (topic, grp) DO UPDATE SET generation = generation + 1",
        (topic, group),
    )


def read_generation(conn: sqlite3.Connection, topic: str, group: str) -> int:
    """Return the group's generation (0 if it has none yet)."""
    row = conn.execute("SELECT generation FROM groups WHERE topic = ? AND grp = ?", (topic, group)).fetchone()
    return 0 if row is None else int(row[0])


def heartbeat(
    conn: sqlite3.Connection,
    topic: str,
    group: str,
    member: str,
    partitions: int,
    *,
    now: float,
    lease_timeout: float,
    busy: Set[int],
) -> Ownership:
    """Heartbeat and rebalance ``member``; run inside a write transaction.

    ``busy`` are partitions with deliveries in flight at this member; they are
    drained rather than released when the member is over its share.
    """
    changed = False
    updated = conn.execute(
        "UPDATE members SET heartbeat_at = ? WHERE topic = ? AND grp = ? AND member = ?",
        (now, topic, group, member),
    ).rowcount
    if not updated:  # joining (or rejoining after being declared dead)
        conn.execute(
            "INSERT INTO members (topic, grp, member, heartbeat_at) VALUES (?, ?, ?, ?)",
            (topic, group, member, now),
        )
        changed = True
    dead = conn.execute(
        "DELETE FROM members WHERE topic = ? AND grp = ? AND heartbeat_at < ?",
        (topic, group, now - lease_timeout),
    ).rowcount
    changed |= dead > 0
    members = [
        row[0]
        for row in conn.execute(
            "SELECT member FROM members WHERE topic = ? AND grp = ? ORDER BY member", (topic, group)
        )
    ]
    index = members.index(member)
    share = partitions // len(members) + (1 if index < partitions % len(members) else 0)
    leases = {
        partition: (owner, expires_at)
        for partition, owner, expires_at in conn.execute(
            "SELECT partition, member, expires_at FROM leases WHERE topic = ? AND grp = ?", (topic, group)
        )
    }
    mine = {partition for partition, (owner, _) in leases.items() if owner == member}
    draining: set[int] = set()
    if len(mine) > share:
        surplus = len(mine) - share
        # highest partitions go first, so members converge on the same layout
        idle = sorted((p for p in mine if p not in busy), reverse=True)[:surplus]
        if idle:
            conn.executemany(
                "DELETE FROM leases WHERE topic = ? AND grp = ? AND partition = ? AND member = ?",
                [(topic, group, p, member) for p in idle],
            )
            mine.difference_update(idle)
            changed = True
        draining = set(sorted((p for p in mine if p in busy), reverse=True)[: surplus - len(idle)])
    elif len(mine) < share:
        free = [p for p in range(partitions) if p not in leases or leases[p][1] < now]
        take = free[: share - len(mine)]
        if take:
            conn.executemany(
                "INSERT INTO leases (topic, grp, partition, member, expires_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (topic, grp, partition) DO UPDATE"
                " SET member = excluded.member, expires_at = excluded.expires_at",
                [(topic, group, p, member, now + lease_timeout) for p in take],
            )
            mine.update(take)
            changed = True
    conn.execute(
        "UPDATE leases SET expires_at = ? WHERE topic = ? AND grp = ? AND member = ?",
        (now + lease_timeout, topic, group, member),
    )
    if changed:
        bump_generation(conn, topic, group)
    return Ownership(frozenset(mine), frozenset(draining), read_generation(conn, topic, group))


def leave(conn: sqlite3.Connection, topic: str, group: str, member: str) -> None:
    """Release every lease of ``member`` and remove it from the group; run inside a write transaction."""
    conn.execute("DELETE FROM leases WHERE topic = ? AND grp = ? AND member = ?", (topic, group, member))
    conn.execute("DELETE FROM members WHERE topic = ? AND grp = ? AND member = ?", (topic, group, member))
    bump_generation(conn, topic, group)


def held_partitions(conn: sqlite3.Connection, topic: str, group: str, member: str) -> set[int]:
    """Return the partitions whose lease ``member`` holds right now."""
    return {
        row[0]
        for row in conn.execute(
            "SELECT partition FROM leases WHERE topic = ? AND grp = ? AND member = ?", (topic, group, member)
        )
    }
