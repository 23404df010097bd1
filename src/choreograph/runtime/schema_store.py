"""The schema store a broker keeps, chosen by what the backend can do, never by its URL's scheme.

In order, for the broker at a URL:

1. a backend whose log is one local file
   (:class:`~choreograph.core.local_log.LocalLogBackend`, the SQLite log)
   keeps schemas in the ``schemas`` table of that file
   (:class:`~choreograph.schema.stores.SqliteSchemaStore`), as every earlier
   version did, so existing registries stay readable without a migration;
2. a backend that keeps key-value namespaces
   (:class:`~choreograph.core.kv.KeyValueProvider`: NATS, Redis, Kafka)
   keeps them in its ``schemas`` namespace
   (:class:`~choreograph.schema.kv_store.KeyValueSchemaStore`), through a
   connection of the store's own on a :class:`~choreograph.schema.kv_store.LoopThread`;
3. anything else keeps no shared registry: :func:`open_schema_store` says
   so, and :func:`default_schema_store` (an App's) answers None, so the
   registry lives in the process's memory — all there is to share for a
   backend whose data no other process sees (``memory://``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from choreograph.brokers import broker_class, open_broker, resolve_url
from choreograph.core.broker import Broker
from choreograph.core.errors import ConfigurationError
from choreograph.core.kv import KeyValueProvider, KeyValueStore
from choreograph.core.local_log import LocalLogBackend
from choreograph.core.redaction import redact_url
from choreograph.schema.kv_store import NAMESPACE, KeyValueSchemaStore, LoopThread
from choreograph.schema.store import SchemaStore
from choreograph.schema.stores import SqliteSchemaStore

logger = logging.getLogger("choreograph.schema")


class BrokerSchemaStore(KeyValueSchemaStore):
    """A :class:`KeyValueSchemaStore` that owns its broker connection and loop thread; :meth:`close` ends both."""

    def __init__(self, url: str) -> None:
        self._thread = LoopThread("choreograph-schemas")
        try:
            broker = self._thread.run(_open(url))
            try:
                kv = self._thread.run(_key_value(broker))
            except BaseException:
                self._thread.run(broker.close())
                raise
        except BaseException:
            self._thread.close()
            raise
        self.broker = broker
        super().__init__(kv, self._thread.run, on_close=broker.close, where=redact_url(url))

    def close(self) -> None:
        """Close the key-value store, the broker connection and the thread. Idempotent."""
        try:
            super().close()
        finally:
            self._thread.close()


async def _open(url: str) -> Broker:
    # Created on the store's own loop: some clients bind to the loop they are created on.
    return open_broker(url)


async def _key_value(broker: Broker) -> KeyValueStore:
    if not isinstance(broker, KeyValueProvider):  # its class said it was: a backend bug
        raise ConfigurationError(f"{type(broker).__name__} does not provide key_value() as its class does")
    return broker.key_value(NAMESPACE)


def open_schema_store(url: str | None = None, *, must_exist: bool = False) -> SchemaStore:
    """Open the schema store the broker at ``url`` keeps (see the module); close it when done.

    Raises ConfigurationError when the backend keeps none (the message says
    to use ``--dir``), or with ``must_exist`` when a local log file does not
    exist yet, so read-only commands do not create one.
    """
    resolved = resolve_url(url)
    cls = broker_class(resolved)
    if isinstance(cls, LocalLogBackend):
        path = cls.log_path(resolved)
        if must_exist and not Path(path).exists():
            raise ConfigurationError(
                f"no broker database at {path!r} (from {redact_url(resolved)}); pass --broker or --dir"
            )
        return SqliteSchemaStore(path)
    if not cls.capabilities.cross_process:
        raise ConfigurationError(
            f"{redact_url(resolved)} keeps nothing beyond one process, so it holds no schema registry; "
            "use a shared broker or --dir"
        )
    if not isinstance(cls, KeyValueProvider):
        raise ConfigurationError(
            f"the {cls.__name__} backend ({redact_url(resolved)}) keeps no key-value store, so no schema registry; "
            "use --dir"
        )
    return BrokerSchemaStore(resolved)


def default_schema_store(url: str | None = None) -> SchemaStore | None:
    """The store an App registers in: the broker's (see :func:`open_schema_store`), or None for in-process schemas.

    None for a backend whose data no other process sees (nothing to share)
    and, with a warning, for one that keeps no key-value store.
    """
    resolved = resolve_url(url)
    cls = broker_class(resolved)
    if not isinstance(cls, LocalLogBackend) and not cls.capabilities.cross_process:
        return None
    if not isinstance(cls, LocalLogBackend | KeyValueProvider):
        logger.warning(
            "schemas are kept in this process only: %s keeps no key-value store to share them in",
            redact_url(resolved),
        )
        return None
    return open_schema_store(resolved)


def close_schema_store(store: SchemaStore) -> None:
    """Close ``store`` if it holds a connection (the SQLite and broker stores do; memory and directory don't)."""
    if isinstance(store, SqliteSchemaStore | KeyValueSchemaStore):
        store.close()
