"""Names of envelope attributes and transport headers, defined once.

CloudEvents binary mode carries attributes as headers prefixed ``ce_`` (the
Kafka/NATS convention); structured mode carries them as JSON members.
"""

from __future__ import annotations

from typing import Final

SPECVERSION: Final = "1.0"
CONTENT_TYPE_JSON: Final = "application/json"
CONTENT_TYPE_CLOUDEVENTS: Final = "application/cloudevents+json"

# CloudEvents context attributes
ID: Final = "id"
SOURCE: Final = "source"
TYPE: Final = "type"
SPEC: Final = "specversion"
TIME: Final = "time"
SUBJECT: Final = "subject"
DATACONTENTTYPE: Final = "datacontenttype"
DATASCHEMA: Final = "dataschema"
DATA: Final = "data"

# choreograph extensions (CloudEvents extension names are lowercase alphanumerics)
CORRELATION_ID: Final = "correlationid"
CAUSATION_ID: Final = "causationid"
PARTITION_KEY: Final = "partitionkey"
TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"
SCHEMA_VERSION: Final = "schemaversion"
SIGNATURE: Final = "signature"

REQUIRED_ATTRIBUTES: Final = (ID, SOURCE, TYPE, SPEC)
BINARY_PREFIX: Final = "ce_"
CONTENT_TYPE_HEADER: Final = "content-type"

DEAD_LETTER_ID_HEADER: Final = "choreograph-dead-letter-id"
"""Transport header of a resubmitted dead letter: that dead letter's id (its successor's ``predecessor``)."""
