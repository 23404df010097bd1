"""Per-handler options: typed, frozen values a handler declares and the middleware that owns them reads.

A handler declares options next to its event type::

    @svc.on(OrderPlaced, options=[RateLimit(per_second=50)])

and whatever acts on an option reads it by type, once per handler when the
consumer starts (``spec.option(RateLimit)``), never per event. Every option
type has an owner: the consumer itself (:data:`CONSUMER_OPTIONS`) or a
middleware installed with ``app.use(...)`` that lists the type in its
``owns``. An option that nothing installed owns would be silently ignored, so
the App refuses it before any consumer starts (:func:`check_owned`), naming
the option, the handler and the middleware to install — dramatiq's check of
actor options, with types instead of strings.

The handler keywords of ``Service.on`` (``retry=``, ``timeout=``,
``concurrency=``, ``dedupe=``, ``start=``, ``breaker=``,
``unknown_types=``) stay fields of :class:`~choreograph.runtime.service.HandlerSpec`:
the built-in pipeline always owns them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar, TypeVar

from choreograph.core.errors import ConfigurationError

OptionT = TypeVar("OptionT", bound="HandlerOption")


class HandlerOption:
    """Base of per-handler options. Subclass it with a frozen dataclass that checks its values.

    ``install_hint`` tells a user who declared the option without its
    middleware what to install (shown in the refusal), e.g.
    ``"app.use(Signing(keys))"``.
    """

    __slots__ = ()
    install_hint: ClassVar[str] = ""


@dataclass(frozen=True, slots=True)
class RateLimit(HandlerOption):
    """Read at most ``per_second`` events a second into this handler, in bursts of at most ``burst``.

    A token bucket per handler **per process**: two processes running the
    handler read up to twice the rate between them. Tokens are taken when
    records are fetched (every record the handler's group reads: handled,
    duplicate, skipped as another type, or redelivered for a retry), so
    events beyond the rate wait in the log, not in memory, and hold no lease
    while they wait. A backlog of N events takes about
    ``(N - burst) / per_second`` seconds. ``burst`` (default: a tenth of a
    second's worth, at least 1) is also the largest batch the handler reads
    at once while limited. Owned by the consumer; nothing to install.
    """

    per_second: float
    burst: int | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.per_second) and self.per_second > 0):
            raise ConfigurationError(f"RateLimit.per_second must be a number > 0, got {self.per_second!r}")
        burst = self.burst
        if burst is not None and (isinstance(burst, bool) or not isinstance(burst, int) or burst < 1):
            raise ConfigurationError(f"RateLimit.burst must be an integer >= 1, got {self.burst!r}")

    @property
    def capacity(self) -> int:
        """The bucket's size: ``burst``, or a tenth of a second's worth of events (at least 1)."""
        return self.burst if self.burst is not None else max(1, math.ceil(self.per_second / 10))


CONSUMER_OPTIONS: tuple[type[HandlerOption], ...] = (RateLimit,)
"""Option types the consumer loop itself acts on (always installed)."""


def check_declared(options: Iterable[object], handler: str) -> tuple[HandlerOption, ...]:
    """Return ``options`` as a tuple after checking each is a HandlerOption and no type appears twice."""
    if isinstance(options, HandlerOption):
        raise ConfigurationError(f"handler {handler}: options= takes a list, e.g. options=[{options!r}]")
    checked: list[HandlerOption] = []
    for option in options:
        if not isinstance(option, HandlerOption):
            raise ConfigurationError(
                f"handler {handler}: options= takes HandlerOption values (such as RateLimit(per_second=50)), "
                f"got {option!r}"
            )
        if any(type(option) is type(other) for other in checked):
            raise ConfigurationError(f"handler {handler} declares {type(option).__name__} twice; keep one")
        checked.append(option)
    return tuple(checked)


def find(options: Sequence[HandlerOption], kind: type[OptionT]) -> OptionT | None:
    """Return the option of type ``kind`` (or a subclass) among ``options``, or None."""
    for option in options:
        if isinstance(option, kind):
            return option
    return None


def check_owned(options: Sequence[HandlerOption], owned: Sequence[type[HandlerOption]], handler: str) -> None:
    """Raise ConfigurationError for the first option of ``handler`` whose type no installed owner lists."""
    for option in options:
        if not isinstance(option, tuple(owned)):
            kind = type(option).__name__
            fix = type(option).install_hint or f"app.use(...) with the middleware that owns {kind}"
            raise ConfigurationError(
                f"handler {handler} declares {option!r}, but no installed middleware owns {kind}, so nothing "
                f"would act on it; install it before the app starts: {fix}"
            )
