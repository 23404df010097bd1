"""Generate an event catalog: Markdown with a Mermaid flow diagram and one section per event.

The diagram draws services as nodes and events as edges from the publishing
service (the event's owner) to each consuming service. The services table
names the team that owns each service, its on-call contact and escalation
path, where declared (``app.service(name, owner=..., oncall=...)``). Each event lists its
owner, consumers (service, handler, group), topic, versions in code and in the
registry, compatibility mode, and fields.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

from choreograph.core.event import Event
from choreograph.schema.compatibility import DEFAULT_MODE
from choreograph.schema.derive import derive_schema
from choreograph.schema.registry import SchemaRegistry
from choreograph.schema.shape import describe, walk_fields
from choreograph.schema.topology import Topology

EXTERNAL: Final = "external"
"""The diagram node standing for publishers outside the app."""

_NODE_SAFE: Final = re.compile(r"[^A-Za-z0-9_]")


def _node(name: str) -> str:
    return "svc_" + _NODE_SAFE.sub("_", name)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def mermaid_diagram(topology: Topology) -> str:
    """Return a Mermaid ``flowchart LR``: services as nodes, one edge per (publisher, event, consumer)."""
    lines = ["flowchart LR"]
    names = [s.name for s in topology.services]
    edges: list[tuple[str, str, str]] = []
    needs_external = False
    for event_cls in topology.events():
        event_type = event_cls.event_type()
        owners = topology.publishers(event_type) or [EXTERNAL]
        needs_external |= owners == [EXTERNAL]
        for owner in owners:
            for consumer, _ in topology.consumers(event_type):
                edge = (owner, event_type, consumer)
                if edge not in edges:
                    edges.append(edge)
    for name in names:
        lines.append(f'    {_node(name)}["{name}"]')
    if needs_external:
        lines.append(f"    {_node(EXTERNAL)}((({EXTERNAL})))")
    for owner, event_type, consumer in edges:
        lines.append(f'    {_node(owner)} -->|"{event_type}"| {_node(consumer)}')
    return "\n".join(lines)


def _fields_table(schema: Mapping[str, Any]) -> list[str]:
    rows = ["| Field | Type | Required | Default | Description |", "|---|---|---|---|---|"]
    for shape in walk_fields(schema):
        node = shape.node
        text = describe(node, schema)
        doc = node.get("description", "") if isinstance(node, Mapping) else ""
        default = f"`{json.dumps(shape.default)}`" if shape.has_default else ""
        rows.append(
            f"| `{shape.path}` | {_cell(text)} | {'yes' if shape.required else 'no'} | "
            f"{_cell(default)} | {_cell(str(doc))} |"
        )
    return rows if len(rows) > 2 else []


def render_catalog(topology: Topology, registry: SchemaRegistry | None = None) -> str:
    """Return the catalog of ``topology`` as Markdown.

    With a ``registry``, each event also lists its registered versions and the
    mode stored for it; without one, the mode shown is the default. Blocks on
    the registry's store; otherwise pure.
    """
    out = [f"# Event catalog: {topology.app_name}", "", "```mermaid", mermaid_diagram(topology), "```", ""]
    out += [
        "## Services",
        "",
        "| Service | Owner | On-call | Escalation | Publishes | Consumes (handler, group) |",
        "|---|---|---|---|---|---|",
    ]
    for service in topology.services:
        publishes = ", ".join(f"`{e.event_type()}` v{e.event_version()}" for e in service.publishes) or "-"
        consumes = ", ".join(f"`{h.event.event_type()}` ({h.name}, {h.group})" for h in service.consumes) or "-"
        owned = service.ownership
        team = _cell(owned.team) if owned else "-"
        oncall = _cell(owned.oncall) if owned and owned.oncall else "-"
        escalation = _cell(" → ".join(owned.escalation)) if owned and owned.escalation else "-"
        out.append(f"| {service.name} | {team} | {oncall} | {escalation} | {publishes} | {consumes} |")
    out += ["", "## Events", ""]
    by_type: dict[str, list[type[Event]]] = {}
    for event_cls in topology.events():
        by_type.setdefault(event_cls.event_type(), []).append(event_cls)
    for event_type in sorted(by_type):
        classes = sorted(by_type[event_type], key=lambda c: c.event_version())
        owners = topology.publishers(event_type)
        consumers = topology.consumers(event_type)
        code_versions = ", ".join(f"v{c.event_version()}" for c in classes)
        mode = registry.mode(event_type) if registry is not None else DEFAULT_MODE
        out += [f"### `{event_type}`", ""]
        doc = (classes[-1].__doc__ or "").strip()
        if doc:
            out += [doc.splitlines()[0], ""]
        teams = topology.owners()
        owner_text = (
            ", ".join(f"{o} (team {teams[o].team})" if o in teams else o for o in owners)
            if owners
            else f"none in this app ({EXTERNAL})"
        )
        if len(owners) > 1:
            owner_text += " (more than one owner: consider a single publishing service)"
        out.append(f"- **Owner:** {owner_text}")
        if consumers:
            listed = ", ".join(f"{svc} (`{h.name}`, group `{h.group}`)" for svc, h in consumers)
            out.append(f"- **Consumers:** {listed}")
        else:
            out.append("- **Consumers:** none")
        out.append(f"- **Topic:** `{classes[-1].topic()}`")
        out.append(f"- **Versions in code:** {code_versions}")
        if registry is not None:
            registered = ", ".join(f"v{v}" for v in registry.versions(event_type)) or "none"
            out.append(f"- **Registered versions:** {registered}")
        out.append(f"- **Compatibility:** {mode}")
        out.append("")
        out += _fields_table(derive_schema(classes[-1]))
        out.append("")
    return "\n".join(out).rstrip() + "\n"
