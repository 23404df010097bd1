"""Domain events: Pydantic models with a stable type name and version.

An event's identity on the wire is its declared ``type`` and ``version``, never
its Python import path, so classes can move between modules and services
written in other languages can produce and consume the same events::

    class OrderPlaced(Event, type="shop.order.placed", version=1):
        order_id: str
        total: Decimal

The default topic is the type name; pass ``topic=`` to share a topic between
several event types (for example all events of one aggregate). Both names
follow :mod:`choreograph.core.names` (letters, digits, ``.``, ``_``, ``-``; at
most 249 characters); a declaration that breaks it raises
:class:`~choreograph.core.errors.InvalidEventName`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from choreograph.core.errors import ConfigurationError, ContractError, InvalidEventName
from choreograph.core.names import check_event_type, check_topic


class Event(BaseModel):
    """Base class of every domain event. Instances are immutable."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    __event_type__: ClassVar[str] = ""
    __event_version__: ClassVar[int] = 1
    __event_topic__: ClassVar[str] = ""

    def __init_subclass__(
        cls,
        *,
        type: str | None = None,  # noqa: A002 - the CloudEvents attribute is called "type"
        version: int | None = None,
        topic: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        if type is None:
            # An abstract intermediate base may omit the type; concrete use is checked later.
            cls.__event_type__ = ""
            return
        try:
            check_event_type(type)
            if topic:  # "" keeps meaning "the type name", as before
                check_topic(topic)
        except ConfigurationError as exc:
            raise InvalidEventName(f"{cls.__qualname__}: not a valid name: {exc}") from None
        resolved_version = 1 if version is None else version
        if not isinstance(resolved_version, int) or resolved_version < 1:
            raise ContractError(f"{cls.__qualname__}: version must be an int >= 1, got {version!r}")
        cls.__event_type__ = type
        cls.__event_version__ = resolved_version
        cls.__event_topic__ = topic or type

    @classmethod
    def event_type(cls) -> str:
        """Return the declared stable type name; raise ContractError if none."""
        if not cls.__event_type__:
            raise ContractError(
                f"{cls.__qualname__} declares no event type; write "
                f"class {cls.__name__}(Event, type='domain.thing.happened', version=1)"
            )
        return cls.__event_type__

    @classmethod
    def event_version(cls) -> int:
        """Return the declared schema version (>= 1)."""
        return cls.__event_version__

    @classmethod
    def topic(cls) -> str:
        """Return the topic this event type is published to."""
        cls.event_type()
        return cls.__event_topic__
