"""Fetch an exact number of deliveries from a subscription, failing the test if they do not come."""

from __future__ import annotations

from choreograph.core.broker import Delivery, Subscription


async def fetch_exactly(subscription: Subscription, count: int, wait: float = 0.2) -> list[Delivery]:
    """Fetch until ``count`` deliveries arrived (at most 50 fetches of ``wait`` seconds); assert exactly that many."""
    got: list[Delivery] = []
    for _ in range(50):
        got += await subscription.fetch(count - len(got), wait)
        if len(got) >= count:
            break
    assert len(got) == count
    return got
