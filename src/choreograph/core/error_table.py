"""Translating a client library's exceptions into choreograph's, from one table per backend.

A backend lists, in order, which driver exceptions (and, optionally, which
condition on them) become which :class:`~choreograph.core.errors.ChoreographError`
and with what message; :func:`translate` applies the first rule that matches.
A table reads as the documentation of a backend's boundary, and one test per
backend walks it.

Messages are ``str.format`` templates over ``what`` (the action that failed,
"publish to 'orders'"), ``exc`` (the driver's exception: ``{exc}``,
``{exc!r}``) and ``name`` (its class name).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from choreograph.core.errors import ChoreographError

Refinement = Callable[[BaseException], ChoreographError | None]


@dataclass(frozen=True, slots=True)
class ErrorRule:
    """One row of a backend's error table."""

    driver: type[BaseException] | tuple[type[BaseException], ...]
    """The driver exception class(es) this rule is for (``isinstance``)."""
    error: type[ChoreographError]
    """What it becomes."""
    message: str
    """The message template (``{what}``, ``{exc}``, ``{name}``)."""
    when: Callable[[BaseException], bool] | None = None
    """A further condition on the exception (an error code, a status); None: every instance."""
    refine: Refinement | None = None
    """Checked first: a more specific error for some instances (refused TLS or credentials), or None."""

    def matches(self, exc: BaseException) -> bool:
        """Whether this rule is for ``exc``."""
        return isinstance(exc, self.driver) and (self.when is None or self.when(exc))

    def apply(self, exc: BaseException, what: str) -> ChoreographError:
        """The error this rule makes of ``exc`` (which it :meth:`matches`) during ``what``."""
        if self.refine is not None:
            refined = self.refine(exc)
            if refined is not None:
                return refined
        return self.error(self.message.format(what=what, exc=exc, name=type(exc).__name__))


ErrorTable = Sequence[ErrorRule]


def translate(exc: BaseException, table: ErrorTable, what: str) -> ChoreographError | None:
    """Return the error the first matching rule of ``table`` makes of ``exc``, or None if no rule matches."""
    for rule in table:
        if rule.matches(exc):
            return rule.apply(exc, what)
    return None


def catches(table: ErrorTable) -> tuple[type[BaseException], ...]:
    """Every driver exception class ``table`` names, for an ``except`` clause."""
    out: list[type[BaseException]] = []
    for rule in table:
        for kind in rule.driver if isinstance(rule.driver, tuple) else (rule.driver,):
            if kind not in out:
                out.append(kind)
    return tuple(out)
