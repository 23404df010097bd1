"""Fast constructors for frozen slotted dataclasses on hot paths.

A frozen dataclass's generated ``__init__`` assigns every field through
``object.__setattr__``; the slot descriptors' own setters, bound once to
module globals, do the same in about half the time. :class:`Envelope` and
:class:`Delivery` are built once per event, so they write their ``__init__``
out with these setters. Instances stay frozen: only ``__init__`` uses them. The
list of slot names is checked against the dataclass fields when the module loads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

Setter = Callable[[Any, Any], None]


def slot_setters(cls: type, names: str) -> tuple[Setter, ...]:
    """Return the setters of ``cls``'s slots ``names`` (space-separated), in that order.

    ``names`` must be exactly the dataclass fields of ``cls``, in declaration
    order: the hand-written ``__init__`` unpacks the setters by position, so a
    field added, removed or moved without updating the list would set the
    wrong slot. Raises TypeError at import time when they differ.
    """
    listed = names.split()
    declared = [field.name for field in dataclasses.fields(cls)]
    if listed != declared:
        raise TypeError(
            f"slot list of {cls.__name__} must be its dataclass fields in order: {' '.join(declared)}; "
            f"got {' '.join(listed)}"
        )
    members = vars(cls)
    return tuple(members[name].__set__ for name in listed)
