"""How ``--help`` reads: metavars a user understands, and docstrings without reStructuredText markup.

Typer 0.29 shows a Python type placeholder (``<bool>``, ``<str>``) beside every
parameter, flags included. :class:`PlainHelpGroup`, the class of the root
command group, rewrites the whole command tree once when it is built:

* a flag shows no value placeholder (it takes none);
* an option without a metavar of its own shows the conventional one of its
  type (``TEXT``, ``INTEGER``, ``FLOAT``, ``PATH``);
* an argument shows its metavar (else its name in capitals) only, no type
  beside it, and the usage line writes it as click does (``TOPIC``, ``[ID]...``);
* double backticks, which docstrings use for code in the API reference, are
  dropped from command and parameter help.
"""

from __future__ import annotations

from typing import Any, Final

import typer
from typer.core import TyperArgument, TyperGroup, TyperOption

_TYPE_METAVARS: Final = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "Path": "PATH", "bool": "BOOLEAN"}


class _NamedArgument(TyperArgument):
    """An argument whose help row shows its name only: the name (a metavar such as MODULE:APP) says what it is."""

    def display_type_rich(self, ctx: typer.Context) -> str | None:  # type: ignore[override]
        return None

    def _usage_display_name(self) -> str:
        # The usage line as click writes it (TOPIC, [ID]...), not typer 0.29's {TOPIC}.
        name = self.display_name_raw
        if not self.required and not name.startswith("["):  # a metavar may be written as [ID]... already
            name = f"[{name}]"
        return name + ("..." if self.nargs != 1 and not name.endswith("...") else "")


def plain_text(text: str | None) -> str | None:
    """Return help text without reStructuredText double backticks."""
    return None if text is None else text.replace("``", "")


def _plain_option(option: TyperOption) -> None:
    if option.metavar is None:
        if option.is_flag:
            option.metavar = ""
        else:
            element = option.bare_type().removeprefix("list[").removesuffix("]")
            option.metavar = _TYPE_METAVARS.get(element, element.upper())
    option.help = plain_text(option.help)


def plain_help(command: Any) -> None:
    """Rewrite the help of ``command`` and of every command below it (see the module docstring)."""
    command.help = plain_text(command.help)
    command.short_help = plain_text(command.short_help)
    help_option = command.get_help_option(typer.Context(command))  # created lazily: make it now
    for param in [*command.params, *([help_option] if help_option is not None else [])]:
        if isinstance(param, TyperOption):
            _plain_option(param)
        elif type(param) is TyperArgument:
            param.__class__ = _NamedArgument
            if param.metavar is None and param.name:
                param.metavar = param.name.upper()
            param.help = plain_text(param.help)
    for sub in getattr(command, "commands", {}).values():
        plain_help(sub)


class PlainHelpGroup(TyperGroup):
    """The root command group: its command tree's help is made plain once, when the group is built."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        plain_help(self)
