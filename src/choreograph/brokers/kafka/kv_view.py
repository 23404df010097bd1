"""The rules that turn a key-value topic into a table: compare-and-set by log order, safe under compaction.

Kafka has no compare-and-set, so :mod:`.kv` decides it by the order of one
partition: a write is a record keyed by the entry's key, carrying the
revision it expects (header ``choreograph-kv-expect``; none: unconditional).
Every reader applies the records in offset order with the same rules, so all
of them agree on which writes won; a writer learns whether it won by reading
up to its own record. A key's revision is the offset of the record that won,
plus one (revisions start at 1).

Rules, for a record at offset ``o`` for key ``k``:

1. ``k`` never seen by this reader: the record applies as it is (a value, or
   a tombstone: absent), revision ``o + 1`` (a copy: its ``copy-of`` revision).
   That is how a key starts; after compaction it is also how its surviving
   record is read.
2. A plain record applies if it expects nothing or expects ``k``'s current
   revision (0 while ``k`` is absent); otherwise it lost and changes nothing.
3. A *copy* restates the entry that has revision ``r`` (header
   ``choreograph-kv-copy-of``), set by the record at offset ``s``
   (``-since``), and says that every record of the key after ``s`` up to
   offset ``t`` (``-through``) lost. It applies if ``r`` is not older than
   the current revision, or if the current state was set by a record in
   ``(s, t]``. Read from the start of the log, a copy never changes anything
   (``r`` is at most the current revision, and a record that lost never set
   a state); it matters only after compaction.

Why copies: compaction keeps only the last record of each key. If that is a
write that lost, the winner before it would be compacted away and the loser
read as the key's state. So a writer that lost appends a copy of the current
entry (naming the records that lost) and more copies until the key's last
record states the current entry (:meth:`KeyValueView.settled`); a reader that
finds a loser as a key's first record applies it (rule 1), and the copy then
replaces it (rule 3).

A record with headers these rules cannot read (another client's) never
applies.

What is guaranteed: readers apply the same rules, so readers of the same
records agree on every outcome (a writer always reads the uncompacted tail
its record is in). A reader of a compacted log may judge an old record
differently but ends with the same table: compaction keeps the table
(values and revisions) as long as the cleaner's boundary does not fall inside
a repair — after a lost record and before the copy that settled it
(``tests/brokers/kafka/test_kafka_kv_view.py`` checks this property on random
races). Kafka cleans whole segments only, older than ``min.compaction.lag.ms``
(a day here), so that needs a segment to roll within the milliseconds of a
repair. A writer killed between losing and appending its copy leaves the
loser last; any store of the namespace that reads it more than
:data:`ORPHAN_AGE` seconds later repairs it as the writer would have
(:meth:`KeyValueView.orphans`), well inside ``min.compaction.lag.ms``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final

EXPECT_HEADER: Final = "choreograph-kv-expect"
COPY_OF_HEADER: Final = "choreograph-kv-copy-of"
SINCE_HEADER: Final = "choreograph-kv-since"
THROUGH_HEADER: Final = "choreograph-kv-through"
OUTCOMES_KEPT: Final = 4096
ORPHAN_AGE: Final = 30.0
"""Seconds after which a reader repairs a key whose last record still does not state it (its writer is gone)."""


@dataclass(slots=True)
class KeyState:
    """One key as a reader knows it."""

    value: bytes | None
    """The value; None while the key is absent (deleted)."""
    revision: int
    """Revision of the current state (of the deletion while absent)."""
    set_by: int
    """Offset of the plain record that set the current state (a copy keeps its ``since``)."""
    last: int
    """Offset of the key's last record read."""
    sound: bool
    """Whether that last record states the current state (compaction may keep it alone)."""

    @property
    def live_revision(self) -> int:
        """The revision a compare-and-set checks: 0 while absent."""
        return 0 if self.value is None else self.revision


class KeyValueView:
    """The table as of the records applied so far, and the outcome of each record."""

    def __init__(self) -> None:
        self.keys: dict[str, KeyState] = {}
        self.position = 0
        """The next offset to apply."""
        self.outcomes: OrderedDict[int, tuple[bool, int]] = OrderedDict()
        """Offset -> (applied, live revision of the key before it) of the last :data:`OUTCOMES_KEPT` records.

        Kept for every record, not only this process's: a concurrent catch-up may
        apply a write before its writer knows the offset the write got.
        """
        self.unsettled: dict[str, float] = {}
        """Keys whose last record does not state their current state -> when that record was written."""

    def apply(self, offset: int, key: str, value: bytes | None, headers: dict[str, str], at: float = 0.0) -> None:
        """Apply one record (rules in the module), written at ``at``; records must come in offset order.

        A record whose headers are not ours to read (another client's) changes nothing, like a write that lost.
        """
        self.position = offset + 1
        state = self.keys.get(key)
        before = state.live_revision if state else 0
        copy_of = headers.get(COPY_OF_HEADER)
        try:
            if copy_of is not None:
                revision = int(copy_of)
                set_by = int(headers.get(SINCE_HEADER, offset))
                lost_through = int(headers.get(THROUGH_HEADER, -1))
                applied = state is None or revision >= state.revision or set_by < state.set_by <= lost_through
            else:
                revision, set_by = offset + 1, offset
                expect = headers.get(EXPECT_HEADER)
                expected = None if expect is None else int(expect)
                applied = state is None or expected is None or expected == before
        except ValueError:
            copy_of, applied = None, False
        if applied:
            self.keys[key] = KeyState(value, revision, set_by, offset, True)
            self.unsettled.pop(key, None)
        elif state is not None:
            state.last = offset
            state.sound = copy_of is not None and int(copy_of) == state.revision and value == state.value
            if state.sound:
                self.unsettled.pop(key, None)
            else:
                self.unsettled[key] = at
        self.outcomes[offset] = (applied, before)
        if len(self.outcomes) > OUTCOMES_KEPT:
            self.outcomes.popitem(last=False)

    def live(self, key: str) -> KeyState | None:
        """The key's state if it exists now."""
        state = self.keys.get(key)
        return state if state is not None and state.value is not None else None

    def revision(self, key: str) -> int:
        """The key's live revision (0: absent)."""
        state = self.keys.get(key)
        return state.live_revision if state else 0

    def orphans(self, written_before: float) -> list[str]:
        """Keys whose unsound last record was written before ``written_before`` (its writer did not repair it)."""
        return [key for key, at in self.unsettled.items() if at < written_before]

    def settled(self, key: str) -> bool:
        """Whether the key's last record states its current state (nothing to repair)."""
        state = self.keys.get(key)
        return state is None or state.sound

    def copy(self, key: str) -> tuple[bytes | None, dict[str, str]]:
        """The value and headers of a record restating ``key``'s current state (as of every record applied)."""
        state = self.keys[key]
        since, through = str(state.set_by), str(self.position - 1)
        return state.value, {COPY_OF_HEADER: str(state.revision), SINCE_HEADER: since, THROUGH_HEADER: through}


def headers_of(message: Any) -> dict[str, str]:
    """A consumed record's headers as text (ours are ASCII; others are read leniently)."""
    return {k: v.decode("ascii", "replace") for k, v in (message.headers or ())}
