"""The in-memory broker: a real partitioned log with consumer groups, in one process.

Not a mock: it keeps every guarantee the contract in :mod:`choreograph.core.broker`
describes except persistence and sharing between processes. Records are
partitioned by key hash; a consumer group remembers per partition which
records it has not settled yet; members of a group split the partitions and
the split is recomputed whenever a member joins or leaves. A record with key K
is handed out only when every earlier record with key K is settled or handed
out in the same batch, so per-key order holds across rebalances and retries.

Everything runs on one event loop and every state change happens between two
``await`` points, so each operation — a settlement included — is atomic.
Waiting fetches are woken by an :class:`asyncio.Event` per topic, or when the
earliest delayed retry falls due; nothing polls.

URL form: ``memory://`` or ``memory://?partitions=8``.
"""

from choreograph.brokers.memory._state import DEFAULT_PARTITIONS
from choreograph.brokers.memory.broker import MemoryBroker
from choreograph.brokers.memory.config import MemoryConfig
from choreograph.brokers.memory.subscription import MemorySubscription

__all__ = ["DEFAULT_PARTITIONS", "MemoryBroker", "MemoryConfig", "MemorySubscription"]
