"""One check every backend's DeadLetterStore passes: ``purge(..., delete=True)`` removes dead letters for good."""

from __future__ import annotations

import time
import uuid

import pytest

from choreograph.core.broker import Broker, DeadLetter, DeadLetterStore, Record, Settlement
from choreograph.core.errors import NotFound
from choreograph.testing.recovery_scenarios import dead_letter_for


async def dead_letter_records(broker: Broker, payloads: list[bytes], timeout: float = 20.0) -> list[DeadLetter]:
    """Publish ``payloads`` to a fresh topic, dead-letter each delivery in a fresh group; return the letters."""
    suffix = uuid.uuid4().hex[:10]
    topic, group = f"erase.{suffix}", f"erase-{suffix}"
    await broker.publish(topic, [Record(value, key=f"k{i}") for i, value in enumerate(payloads)])
    sub = await broker.subscribe(topic, group)
    letters: list[DeadLetter] = []
    deadline = time.monotonic() + timeout
    try:
        while len(letters) < len(payloads):
            assert time.monotonic() < deadline, f"only {len(letters)} of {len(payloads)} records were delivered"
            batch = await sub.fetch(10, 0.5)
            settlement = Settlement()
            for delivery in batch:
                letter = dead_letter_for(delivery, group)
                settlement.dead_letters.append((delivery, letter))
                letters.append(letter)
            if batch:
                await sub.settle(settlement)
    finally:
        await sub.close()
    return sorted(letters, key=lambda letter: letter.value)


async def check_dead_letter_deletion(broker: Broker) -> None:
    """Given three dead letters, delete them by id (open and purged alike): none can be read or listed after."""
    assert isinstance(broker, DeadLetterStore)
    first, second, third = await dead_letter_records(broker, [b"erase-me-0", b"erase-me-1", b"erase-me-2"])
    group = first.group
    assert {d.id for d in await broker.dead_letters(group=group, status=None)} == {first.id, second.id, third.id}

    # When one open letter is deleted
    assert await broker.purge([first.id], delete=True) == 1
    # Then it cannot be read by id, listed, resubmitted, nor deleted twice
    with pytest.raises(NotFound):
        await broker.dead_letter(first.id)
    with pytest.raises(NotFound):
        await broker.resubmit(first.id)
    assert first.id not in {d.id for d in await broker.dead_letters(group=group, status=None)}
    assert await broker.purge([first.id], delete=True) == 0

    # When a letter only marked purged (kept for audit, bytes and all) is deleted, with an open one
    assert await broker.purge([second.id]) == 1
    assert (await broker.dead_letter(second.id)).value == b"erase-me-1"
    assert await broker.purge([second.id, third.id, "no-such-id"], delete=True) == 2
    # Then nothing of the group is left, under any status
    assert await broker.dead_letters(group=group, status=None) == []
    for letter in (second, third):
        with pytest.raises(NotFound):
            await broker.dead_letter(letter.id)
