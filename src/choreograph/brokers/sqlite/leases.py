"""Partition leases: how members of a group, possibly in different processes, share partitions.

Each member heartbeats in a write transaction. A heartbeat:

1. records the member as alive and forgets members silent for longer than
   ``lease_timeout`` (crashed processes);
2. computes this member's fair share of the partitions — the live members
   sorted by id, the first ``partitions % members`` of them get one extra;
3. gives up partitions over its share (idle ones at once; ones with
   deliveries in flight are *drained*: no new fetches, released after their
   deliveries are settled) so a joining member gets some. Which partitions
   are idle is decided by the member itself (``release_idle``), which in the
   same step stops handing out records from them, so a fetch running
   concurrently on another thread can never hand out a partition that is
   being given away;
4. takes free or expired partitions up to its share;
5. extends the expiry of every lease it keeps.

Before its members rebalance, a process renews all of them (:func:`renew`),
and every settle renews the settling member's leases (:func:`renew_held`), so
a live member whose heartbeats are delayed by a busy process keeps its
partitions; only a process that stops altogether loses them.

Leases expire on wall-clock time (``time.time()``), the one clock every
process on the machine shares. Every change of membership or ownership bumps
the group's ``generation``, which other members poll cheaply to rebalance
early instead of waiting for their next heartbeat.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
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
    release_idle: Callable[[Sequence[int], int], Sequence[int]],
) -> Ownership:
    """Heartbeat and rebalance ``member``; run inside a write transaction.

    When the member is over its share, ``release_idle(candidates, surplus)``
    is called with its leased partitions, highest first: it returns up to
    ``surplus`` of them that have nothing in flight, and must stop handing out
    records from those before it returns. They are released; the rest of the
    surplus (partitions with deliveries in flight) is drained instead.
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
        idle = list(release_idle(sorted(mine, reverse=True), surplus))[:surplus]
        if idle:
            conn.executemany(
                "DELETE FROM leases WHERE topic = ? AND grp = ? AND partition = ? AND member = ?",
                [(topic, group, p, member) for p in idle],
            )
            mine.difference_update(idle)
            changed = True
        # release_idle gave up every idle candidate it could, so what remains over the share is busy
        draining = set(sorted(mine, reverse=True)[: surplus - len(idle)])
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


def renew(
    conn: sqlite3.Connection, topic: str, group: str, members: Sequence[str], *, now: float, lease_timeout: float
) -> None:
    """Mark ``members`` alive and extend their leases, without rebalancing; run inside a write transaction.

    A process renews all its members of a group before any of them
    rebalances, so one member never declares a sibling in the same (healthy)
    process dead, or takes its leases, because their shared writer was slow.
    """
    marks = ",".join("?" * len(members))
    conn.execute(
        f"UPDATE members SET heartbeat_at = ? WHERE topic = ? AND grp = ? AND member IN ({marks})",
        (now, topic, group, *members),
    )
    conn.execute(
        f"UPDATE leases SET expires_at = ? WHERE topic = ? AND grp = ? AND member IN ({marks})",
        (now + lease_timeout, topic, group, *members),
    )


def renew_held(
    conn: sqlite3.Connection, topic: str, group: str, member: str, *, now: float, lease_timeout: float
) -> set[int]:
    """Extend every lease ``member`` holds and return those partitions; run inside a write transaction.

    A settle calls this: a member that is settling is alive, so its leases
    last ``lease_timeout`` from now even if its heartbeats run late.
    """
    return {
        row[0]
        for row in conn.execute(
            "UPDATE leases SET expires_at = ? WHERE topic = ? AND grp = ? AND member = ? RETURNING partition",
            (now + lease_timeout, topic, group, member),
        )
    }
