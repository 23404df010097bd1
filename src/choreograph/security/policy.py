"""Who may publish which event types and consume which topics.

A policy lists, per service, the event types it may publish (exact types, or
a prefix ending in ``*``: ``shop.payment.*``) and the topics it may consume
(likewise). A service the policy does not name may do nothing. It is
enforced twice:

- by the runtime on consume, through the *verified* signer: an event whose
  signing service may not publish its type is dead-lettered ``unauthorized``
  (so signatures must be on for this to mean anything); a handler on a topic
  its service may not consume is refused when the app starts;
- by the broker, from the configuration :mod:`choreograph.security.acl`
  exports (NATS permissions, Redis ACL rules, Kafka ACLs).

Declared in code (:class:`AccessPolicy`, or :meth:`AccessPolicy.from_topology`
from what the app declares) or in a TOML file::

    [services.payment]
    publish = ["shop.payment.captured", "shop.payment.declined"]
    consume = ["shop.inventory.reserved"]
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from choreograph.core.errors import ConfigurationError
from choreograph.core.names import check_service
from choreograph.schema.topology import Topology


def _matches(patterns: frozenset[str], name: str) -> bool:
    if name in patterns:
        return True
    return any(p.endswith("*") and name.startswith(p[:-1]) for p in patterns)


@dataclass(frozen=True, slots=True)
class Rights:
    """What one service may do."""

    publish: frozenset[str] = frozenset()
    """Event types (or ``prefix*`` patterns) the service may publish."""
    consume: frozenset[str] = frozenset()
    """Topics (or ``prefix*`` patterns) the service may consume."""


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """Rights per service name. Immutable; pure lookups, safe everywhere."""

    services: Mapping[str, Rights] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in self.services:
            check_service(name)

    def may_publish(self, service: str, event_type: str) -> bool:
        """Whether ``service`` may publish events of ``event_type``."""
        rights = self.services.get(service)
        return rights is not None and _matches(rights.publish, event_type)

    def may_consume(self, service: str, topic: str) -> bool:
        """Whether ``service`` may consume ``topic``."""
        rights = self.services.get(service)
        return rights is not None and _matches(rights.consume, topic)

    @classmethod
    def of(cls, **services: tuple[Iterable[str], Iterable[str]]) -> AccessPolicy:
        """Build from ``service=(publish types, consume topics)`` keyword arguments."""
        return cls({name: Rights(frozenset(pub), frozenset(con)) for name, (pub, con) in services.items()})

    @classmethod
    def from_topology(cls, topology: Topology) -> AccessPolicy:
        """The least rights the app's declarations need: what each service publishes and the topics it handles."""
        return cls(
            {
                service.name: Rights(
                    frozenset(event.event_type() for event in service.publishes),
                    frozenset(handler.event.topic() for handler in service.consumes),
                )
                for service in topology.services
            }
        )

    @classmethod
    def load(cls, path: str | Path) -> AccessPolicy:
        """Read a TOML policy file (see the module). Raises ConfigurationError naming what is wrong."""
        try:
            doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigurationError(f"policy file {str(path)!r} cannot be read: {exc}") from exc
        services = doc.get("services")
        if not isinstance(services, dict):
            raise ConfigurationError(f"policy file {str(path)!r} has no [services.<name>] tables")
        out: dict[str, Rights] = {}
        for name, table in services.items():
            if not isinstance(table, dict) or set(table) - {"publish", "consume"}:
                raise ConfigurationError(f"policy file: [services.{name}] takes only 'publish' and 'consume' lists")
            lists = {}
            for kind in ("publish", "consume"):
                value = table.get(kind, [])
                if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                    raise ConfigurationError(f"policy file: services.{name}.{kind} must be a list of names")
                lists[kind] = frozenset(value)
            out[name] = Rights(lists["publish"], lists["consume"])
        return cls(out)

    def to_toml(self) -> str:
        """Render as a policy file."""
        lines: list[str] = []
        for name in sorted(self.services):
            rights = self.services[name]
            lines.append(f"[services.{name}]")
            lines.append("publish = [" + ", ".join(f'"{t}"' for t in sorted(rights.publish)) + "]")
            lines.append("consume = [" + ", ".join(f'"{t}"' for t in sorted(rights.consume)) + "]")
            lines.append("")
        return "\n".join(lines)
