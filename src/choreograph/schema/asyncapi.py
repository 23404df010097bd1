"""Generate an AsyncAPI 3.0 document from a :class:`Topology`.

- one channel per topic (several event types may share one);
- one message per event type and version, its payload the derived JSON Schema
  (nested models hoisted to ``components/schemas``) and its headers the
  CloudEvents attributes and choreograph extensions (binary mode, ``ce_*``;
  structured mode carries the same names as JSON members);
- one ``send`` operation per (service, published event), one ``receive``
  operation per handler, tagged with the service and consumer group;
- ownership (``app.service(name, owner=..., oncall=..., escalation=...)``) as
  specification extensions: ``x-owner``, ``x-oncall`` and ``x-escalation`` on
  each operation of an owned service, and ``x-choreograph-owners`` (service ->
  team, oncall, escalation) at the root.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

from choreograph.core import headers as h
from choreograph.core.event import Event
from choreograph.schema.derive import TYPE_KEY, VERSION_KEY, derive_schema
from choreograph.schema.topology import Ownership, Topology

ASYNCAPI_VERSION: Final = "3.0.0"
HEADERS_SCHEMA: Final = "CloudEventsHeaders"
_SAFE: Final = re.compile(r"[^\w.\-]")


def _key(text: str) -> str:
    return _SAFE.sub("_", text)


def message_id(event_cls: type[Event]) -> str:
    """Return the component name of an event's message: ``<type>.v<version>``."""
    return _key(f"{event_cls.event_type()}.v{event_cls.event_version()}")


def channel_id(topic: str) -> str:
    """Return the channel key of a topic."""
    return _key(topic)


def cloudevents_headers() -> dict[str, Any]:
    """Return the JSON Schema of the CloudEvents headers (binary mode) choreograph sets."""

    def ce(name: str) -> str:
        return f"{h.BINARY_PREFIX}{name}"

    text = {"type": "string"}
    return {
        "type": "object",
        "description": (
            "CloudEvents 1.0 attributes and choreograph extensions. Binary mode carries them as "
            "ce_* headers; structured mode (application/cloudevents+json) as members of the JSON "
            "envelope, with the payload under 'data'."
        ),
        "required": [ce(h.ID), ce(h.SOURCE), ce(h.TYPE), ce(h.SPEC)],
        "properties": {
            ce(h.ID): {**text, "description": "Event id, a UUIDv7 (time-ordered)."},
            ce(h.SOURCE): {**text, "description": "The publishing service."},
            ce(h.TYPE): {**text, "description": "The event type name (stable, not a Python path)."},
            ce(h.SPEC): {"type": "string", "const": h.SPECVERSION},
            ce(h.TIME): {**text, "format": "date-time"},
            ce(h.SUBJECT): text,
            ce(h.DATASCHEMA): {**text, "format": "uri"},
            ce(h.CORRELATION_ID): {**text, "description": "Id of the event that started the flow."},
            ce(h.CAUSATION_ID): {**text, "description": "Id of the event whose handler published this one."},
            ce(h.PARTITION_KEY): {**text, "description": "Events with one key keep their order."},
            ce(h.TRACEPARENT): {**text, "description": "W3C trace context."},
            ce(h.TRACESTATE): text,
            ce(h.SCHEMA_VERSION): {
                "type": ["integer", "string"],
                "description": "Schema version of the payload.",
            },
            ce(h.SIGNATURE): {**text, "description": "Signature of the event, when signing is on."},
            h.CONTENT_TYPE_HEADER: {**text, "default": h.CONTENT_TYPE_JSON},
        },
    }


def _rewrite_refs(node: Any, names: Mapping[str, str]) -> Any:
    if isinstance(node, list):
        return [_rewrite_refs(v, names) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str) and value in names:
            out[key] = f"#/components/schemas/{names[value]}"
        else:
            out[key] = _rewrite_refs(value, names)
    return out


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _hoist(event_cls: type[Event], schemas: dict[str, Any]) -> dict[str, Any]:
    """Move the event schema's ``$defs`` into ``schemas``; return the payload schema.

    A definition identical to one already there (the same nested model used by
    several events) is shared; a different one with the same name is stored
    as ``<message id>.<name>``.
    """
    schema = derive_schema(event_cls)
    schema.pop("$schema", None)
    defs: dict[str, Any] = schema.pop("$defs", {})
    plain = {f"#/$defs/{name}": _key(name) for name in defs}
    names: dict[str, str] = {}
    for name, body in defs.items():
        candidate = _key(name)
        if candidate in schemas and not _same(schemas[candidate], _rewrite_refs(body, plain)):
            candidate = _key(f"{message_id(event_cls)}.{name}")
        names[f"#/$defs/{name}"] = candidate
    for name, body in defs.items():
        schemas.setdefault(names[f"#/$defs/{name}"], _rewrite_refs(body, names))
    payload: dict[str, Any] = _rewrite_refs(schema, names)
    return payload


def owner_extensions(ownership: Ownership | None) -> dict[str, Any]:
    """Return the ``x-owner`` / ``x-oncall`` / ``x-escalation`` members for an operation (none if unowned)."""
    if ownership is None:
        return {}
    out: dict[str, Any] = {"x-owner": ownership.team}
    if ownership.oncall:
        out["x-oncall"] = ownership.oncall
    if ownership.escalation:
        out["x-escalation"] = list(ownership.escalation)
    return out


def asyncapi_document(
    topology: Topology,
    *,
    version: str = "1.0.0",
    title: str | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """Return an AsyncAPI 3.0.0 document (a dict ready for ``json.dumps``) describing ``topology``.

    Pure and deterministic: the same topology gives the same document.
    """
    schemas: dict[str, Any] = {HEADERS_SCHEMA: cloudevents_headers()}
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}

    def add_message(event_cls: type[Event]) -> tuple[str, str]:
        mid = message_id(event_cls)
        cid = channel_id(event_cls.topic())
        if mid not in messages:
            payload = _hoist(event_cls, schemas)
            doc = (event_cls.__doc__ or "").strip()
            message: dict[str, Any] = {
                "name": event_cls.event_type(),
                "title": f"{event_cls.__name__} v{event_cls.event_version()}",
                "contentType": h.CONTENT_TYPE_JSON,
                "headers": {"$ref": f"#/components/schemas/{HEADERS_SCHEMA}"},
                "payload": payload,
                "correlationId": {
                    "description": "Events of one flow share the correlation id.",
                    "location": f"$message.header#/{h.BINARY_PREFIX}{h.CORRELATION_ID}",
                },
                TYPE_KEY: event_cls.event_type(),
                VERSION_KEY: event_cls.event_version(),
            }
            if doc:
                message["description"] = doc
            messages[mid] = message
        channel = channels.setdefault(cid, {"address": event_cls.topic(), "messages": {}})
        channel["messages"][mid] = {"$ref": f"#/components/messages/{mid}"}
        return cid, mid

    for service in topology.services:
        for event_cls in service.publishes:
            cid, mid = add_message(event_cls)
            operations[_key(f"{service.name}.send.{mid}")] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{cid}"},
                "messages": [{"$ref": f"#/channels/{cid}/messages/{mid}"}],
                "summary": f"{service.name} publishes {event_cls.event_type()}",
                "x-choreograph-service": service.name,
                **owner_extensions(service.ownership),
            }
        for handler in service.consumes:
            cid, mid = add_message(handler.event)
            operations[_key(f"{service.name}.receive.{handler.name}")] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{cid}"},
                "messages": [{"$ref": f"#/channels/{cid}/messages/{mid}"}],
                "summary": f"{service.name}.{handler.name} handles {handler.event.event_type()}",
                "x-choreograph-service": service.name,
                "x-choreograph-group": handler.group,
                **owner_extensions(service.ownership),
            }
    info: dict[str, Any] = {"title": title or topology.app_name, "version": version}
    if description:
        info["description"] = description
    document: dict[str, Any] = {
        "asyncapi": ASYNCAPI_VERSION,
        "info": info,
        "defaultContentType": h.CONTENT_TYPE_JSON,
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }
    owners = topology.owners()
    if owners:
        document["x-choreograph-owners"] = {
            name: {k.removeprefix("x-"): v for k, v in owner_extensions(o).items()} for name, o in owners.items()
        }
    return document


def asyncapi_json(topology: Topology, **options: Any) -> str:
    """Return :func:`asyncapi_document` as indented JSON text."""
    return json.dumps(asyncapi_document(topology, **options), indent=2, ensure_ascii=False) + "\n"
