"""The tolerant reader: what a consumer does with fields its event class does not declare.

A newer producer may add fields. Whether an older consumer reading its data
accepts them is one setting per event class — Pydantic's ``extra`` — and the
schema tools and validation read the same setting, so they agree:

==================  =========================================  ==============================================
``extra``           ``schema diff`` / registry (FORWARD)       validating data with fields it does not know
==================  =========================================  ==============================================
``"forbid"``        closed schema: an added field breaks        rejected (``extra_forbidden``): the runtime
(Event's default)   forward compatibility (``field-added``)     dead-letters it with reason ``schema``
``"ignore"``        open schema: an added field is forward      the fields are dropped, the rest is handled
                    compatible
==================  =========================================  ==============================================

Opt a class into the tolerant reader with
``model_config = ConfigDict(frozen=True, extra="ignore")``. Note the table of
``docs/schemas.md``: an open object makes *removing* a field (and re-adding
one with another type) a backward concern instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from choreograph.core.event import Event


def tolerant_reader(event_cls: type[Event]) -> bool:
    """Return whether ``event_cls`` reads data carrying fields it does not declare (``extra`` is not ``forbid``)."""
    return event_cls.model_config.get("extra") != "forbid"


def unknown_fields(event_cls: type[Event], data: Mapping[str, Any]) -> list[str]:
    """Return the top-level fields of ``data`` that ``event_cls`` does not declare (by name or alias), sorted."""
    known = set(event_cls.model_fields)
    known |= {f.alias for f in event_cls.model_fields.values() if f.alias}
    return sorted(name for name in data if name not in known)
