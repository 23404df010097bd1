"""Fast constructors for frozen slotted dataclasses on hot paths.

A frozen dataclass's generated ``__init__`` assigns every field through
``object.__setattr__``; the slot descriptors' own setters, bound once to
module globals, do the same in about half the time. :class:`Envelope` and
:class:`Delivery` are built once per event, so they write their ``__init__``
out with these setters. Instances stay frozen: only ``__init__`` uses them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Setter = Callable[[Any, Any], None]


def slot_setters(cls: type, names: str) -> tuple[Setter, ...]:
    """Return the setters of ``cls``'s slots ``names`` (space-separated), in that order."""
    members = vars(cls)
    return tuple(members[name].__set__ for name in names.split())
