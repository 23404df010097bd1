"""Schema governance: derived JSON Schemas, a registry with compatibility modes, upcasters, docs.

- :func:`derive_schema` turns an Event class into a JSON Schema stamped with
  ``x-choreograph-type`` and ``x-choreograph-version``.
- :class:`SchemaRegistry` keeps versions in a :class:`SchemaStore` (memory, a broker's key-value store,
  the embedded SQLite file, a directory of files, or your own backend) and
  checks new versions under a per-type :class:`Compatibility` mode.
- :func:`validate_payload` / :class:`SchemaGuard` validate on publish and
  consume; :class:`Upcasters` turn old payloads into new shapes.
- :func:`asyncapi_document` and :func:`render_catalog` describe a
  :class:`Topology`.

Imports only ``choreograph.core``, the standard library and Pydantic;
``jsonschema`` is loaded lazily by :class:`JsonSchemaValidator`.
"""

from choreograph.schema.asyncapi import asyncapi_document, asyncapi_json, cloudevents_headers
from choreograph.schema.catalog import mermaid_diagram, render_catalog
from choreograph.schema.comparison import Direction, Finding, compare
from choreograph.schema.compatibility import (
    DEFAULT_MODE,
    Change,
    Compatibility,
    CompatibilityReport,
    check_compatibility,
    diff_schemas,
    reserved_findings,
)
from choreograph.schema.derive import TYPE_KEY, VERSION_KEY, derive_schema, fingerprint, schema_identity
from choreograph.schema.errors import (
    FieldError,
    IncompatibleSchema,
    SchemaConflict,
    SchemaError,
    SchemaStoreError,
    SchemaViolation,
    UnknownSchema,
    UpcastError,
)
from choreograph.schema.kv_store import KeyValueSchemaStore
from choreograph.schema.registry import SchemaRegistry
from choreograph.schema.rules import EXPLANATIONS, Rule
from choreograph.schema.store import CheckedSchemaStore, SchemaRecord, SchemaStore, Subject
from choreograph.schema.stores import (
    DirectorySchemaStore,
    MemorySchemaStore,
    SqliteSchemaStore,
    sqlite_path_from_url,
    sync_stores,
)
from choreograph.schema.topology import HandlerInfo, Ownership, ServiceInfo, Topology
from choreograph.schema.upcast import Upcasters
from choreograph.schema.validation import (
    JsonSchemaValidator,
    SchemaGuard,
    validate_event,
    validate_payload,
)

__all__ = [
    "DEFAULT_MODE",
    "EXPLANATIONS",
    "TYPE_KEY",
    "VERSION_KEY",
    "Change",
    "CheckedSchemaStore",
    "Compatibility",
    "CompatibilityReport",
    "Direction",
    "DirectorySchemaStore",
    "FieldError",
    "Finding",
    "HandlerInfo",
    "IncompatibleSchema",
    "JsonSchemaValidator",
    "KeyValueSchemaStore",
    "MemorySchemaStore",
    "Ownership",
    "Rule",
    "SchemaConflict",
    "SchemaError",
    "SchemaGuard",
    "SchemaRecord",
    "SchemaRegistry",
    "SchemaStore",
    "SchemaStoreError",
    "SchemaViolation",
    "ServiceInfo",
    "SqliteSchemaStore",
    "Subject",
    "Topology",
    "UnknownSchema",
    "UpcastError",
    "Upcasters",
    "asyncapi_document",
    "asyncapi_json",
    "check_compatibility",
    "cloudevents_headers",
    "compare",
    "derive_schema",
    "diff_schemas",
    "fingerprint",
    "mermaid_diagram",
    "render_catalog",
    "reserved_findings",
    "schema_identity",
    "sqlite_path_from_url",
    "sync_stores",
    "validate_event",
    "validate_payload",
]
