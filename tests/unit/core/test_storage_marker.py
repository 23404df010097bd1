"""The deployment marker tells a server that lost its data from one that is simply new, at a bounded cost."""

from __future__ import annotations

import pytest

from choreograph.core.errors import StorageLost
from choreograph.core.storage_marker import StorageMarker


class _Server:
    """The marker as a server keeps it: one value, set only if absent; counts the reads."""

    def __init__(self) -> None:
        self.value: str | None = None
        self.reads = 0

    async def read(self) -> str | None:
        self.reads += 1
        return self.value

    async def create(self, epoch: str) -> str:
        if self.value is None:
            self.value = epoch
        return self.value


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _marker(server: _Server, clock: _Clock | None = None) -> StorageMarker:
    return StorageMarker(
        server.read, server.create, broker="Redis at redis://127.0.0.1:6379/0", where="key p:{meta}:epoch",
        interval=5.0, clock=clock or _Clock(),
    )  # fmt: skip


async def test_a_first_start_creates_the_marker_and_another_instance_adopts_it() -> None:
    server = _Server()
    first, second = _marker(server), _marker(server)
    await first.ensure()
    await second.ensure()
    assert first.epoch is not None and first.epoch == second.epoch == server.value
    await first.verify("a check")  # nothing lost


async def test_a_marker_gone_or_changed_is_a_loss_and_stays_one() -> None:
    server = _Server()
    marker = _marker(server)
    await marker.ensure()
    server.value = None  # the server restarted empty
    with pytest.raises(StorageLost, match=r"Redis at redis://127\.0\.0\.1:6379/0 lost its data.*is gone.*a reconnect"):
        await marker.verify("a reconnect")
    server.value = "someone-else"  # another process started on the empty server meanwhile
    reads = server.reads
    with pytest.raises(StorageLost, match="is gone"):  # sticky: the first finding, without asking again
        await marker.verify("later")
    assert server.reads == reads


async def test_another_instances_new_marker_is_a_loss_for_this_one() -> None:
    server = _Server()
    marker = _marker(server)
    await marker.ensure()
    server.value = "a-new-epoch"
    with pytest.raises(StorageLost, match="changed from"):
        await marker.verify("a check")


async def test_an_instance_that_never_saw_a_marker_adopts_it_instead_of_failing() -> None:
    server = _Server()
    marker = _marker(server)
    await marker.verify("joining a group")  # a first start: nothing to compare with
    assert marker.epoch == server.value is not None


async def test_the_periodic_check_reads_the_server_at_most_once_per_interval() -> None:
    server, clock = _Server(), _Clock()
    marker = _marker(server, clock)
    await marker.ensure()
    for _ in range(1000):  # a thousand publishes within the interval: no read
        await marker.verify_if_due()
    assert server.reads == 0
    clock.now += 5.0
    for _ in range(1000):
        await marker.verify_if_due()
    assert server.reads == 1
    server.value = None
    clock.now += 5.0
    with pytest.raises(StorageLost):
        await marker.verify_if_due()


async def test_a_structure_gone_while_the_marker_holds_is_a_loss() -> None:
    server = _Server()
    marker = _marker(server)
    await marker.ensure()
    lost = marker.vanished("the consumer group 'billing' of topic 'orders'", "a read")
    assert "lost the consumer group 'billing'" in str(lost)
    with pytest.raises(StorageLost):
        marker.check()
