"""The in-memory broker's key-value namespaces (the :class:`~choreograph.core.kv.KeyValueProvider` capability).

A mixin of :class:`~choreograph.brokers.memory.MemoryBroker`: one
:class:`~choreograph.core.kv.MemoryKeyValue` per namespace, kept by the broker
instance, so every user of one broker (the app, the observer, a test) shares
the same documents. Like the log, the stores live as long as the broker object
and are not shared with other processes.
"""

from __future__ import annotations

from choreograph.core.kv import MemoryKeyValue, check_namespace


class KeyValueShelf:
    """The :class:`~choreograph.core.kv.KeyValueProvider` half of :class:`MemoryBroker`."""

    def key_value(self, namespace: str) -> MemoryKeyValue:
        """The store for ``namespace``; the same object for every call with that name on this broker."""
        check_namespace(namespace)
        # Created lazily so the broker's constructor stays as it is.
        stores: dict[str, MemoryKeyValue] = self.__dict__.setdefault("_key_values", {})
        store = stores.get(namespace)
        if store is None:
            store = stores[namespace] = MemoryKeyValue(namespace)
        return store
