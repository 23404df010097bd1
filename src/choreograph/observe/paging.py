"""Read a whole topic page by page, with a guarantee that the read ends.

Every tool that reads the log without a consumer group (``flows``, ``flow
show``, SLO reports) goes through :func:`read_pages`: each page must move the
read forward, or the read raises instead of asking for the same page again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Final

from choreograph.core.broker import Delivery, LogReader, Position
from choreograph.core.errors import BrokerError, UnknownTopic

DONE: Final = 2**62
"""A start offset past any real one: the partition has been read to its end."""


async def read_pages(
    reader: LogReader, topic: str, start: Position | None = None, *, page: int = 5000, missing_ok: bool = True
) -> AsyncIterator[Sequence[Delivery]]:
    """Yield ``topic``'s records from ``start`` (default: earliest) to the end of the log, one page at a time.

    Pages come in (partition, offset) order; after a page, every partition
    before the last one it reached is complete and the next page starts after
    its last record. Ends at the first empty page. Raises BrokerError if a page
    does not move the read forward (a backend reporting offsets that do not
    grow): the read ends or fails, it never spins. A topic that does not exist
    yields nothing unless ``missing_ok`` is false (then UnknownTopic).
    """
    position = start or Position.earliest()
    reached: tuple[int, int] | None = None
    while True:
        try:
            batch = await reader.read(topic, position, limit=page)
        except UnknownTopic:
            if missing_ok and reached is None:
                return
            raise
        if not batch:
            return
        yield batch
        last = batch[-1]
        after = (last.partition, last.offset + 1)
        if reached is not None and after <= reached:
            raise BrokerError(
                f"reading {topic!r} made no progress: a page ended at partition {last.partition} offset "
                f"{last.offset}, not after partition {reached[0]} offset {reached[1] - 1}; the backend reports "
                "offsets that are not log positions"
            )
        reached = after
        offsets = dict.fromkeys(range(last.partition), DONE)
        offsets[last.partition] = last.offset + 1
        position = Position.at_offsets(offsets)
