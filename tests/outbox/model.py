"""What the outbox tests share: events, a ledger table, and readers of the broker's log."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import Column, Integer, MetaData, String, Table

from choreograph.core import codec
from choreograph.core.broker import Broker, LogReader, Position
from choreograph.core.envelope import Envelope
from choreograph.core.errors import UnknownTopic
from choreograph.core.event import Event


class Moved(Event, type="test.outbox.moved", version=1):
    """A business change with a sequence number per key."""

    key: str
    n: int


class Charged(Event, type="test.outbox.charged", version=1):
    """What the transactional handler emits for each Moved it handles."""

    key: str
    n: int


business = MetaData()
ledger = Table(
    "ledger",
    business,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False),  # not unique on purpose: duplicates must show
    Column("amount", Integer, nullable=False),
)


async def read_log(broker: Broker, topic: str) -> list[Envelope]:
    """Every envelope on ``topic``, in (partition, offset) order."""
    assert isinstance(broker, LogReader)
    try:
        batch = await broker.read(topic, Position(), limit=100_000)
    except UnknownTopic:
        return []
    return [codec.decode(d.value) for d in batch]


def first_copies_in_order(envelopes: list[Envelope]) -> dict[str, list[int]]:
    """Per partition key, the ``n`` of each event's first copy, in log order (repeats of an id dropped)."""
    seen: set[str] = set()
    per_key: dict[str, list[int]] = defaultdict(list)
    for env in envelopes:
        if env.id in seen:
            continue
        seen.add(env.id)
        per_key[str(env.partitionkey)].append(int(env.data["n"]))
    return dict(per_key)
