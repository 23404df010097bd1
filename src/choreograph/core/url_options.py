"""A broker URL's ``?name=value`` options, read by the types of the backend's config dataclass.

Each backend's settings are one frozen config dataclass; its fields *are* the
URL options. :func:`parse_options` reads the query string with pydantic,
field by field, from the field's type (``int``, ``float``, ``bool``, ``str``,
``X | None``) — no table repeating names and types. A field's ``Annotated``
metadata (:class:`Url`) adjusts how: a parser of its own (``retention``
takes ``7d``), text normalised first (``tls_verify`` is case-insensitive), or
kept out of URLs altogether (inline secrets: a URL is logged and shown).

Whatever the text, the result is the options or a ConfigurationError naming
the option, the value and what it accepts — never another exception. Old
spellings map to their new names as deprecated aliases (a logged warning
names the new one). Values are checked again, as in code, by the config's
``__post_init__``; pydantic runs only here, when a URL is opened.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Union
from urllib.parse import parse_qsl

from choreograph.core.errors import ConfigurationError

Reader = Callable[[str], Any]

logger = logging.getLogger("choreograph.brokers")

_NONE_WORDS: Final = frozenset({"", "none", "null"})
_EXPECTED: Final = {
    int: "an integer",
    float: "a number",
    bool: "true or false (also 1/0, yes/no, on/off)",
    str: "text",
}


@dataclass(frozen=True, slots=True)
class Url:
    """How a config field is read from a broker URL (metadata in the field's ``Annotated`` type)."""

    parse: Reader | None = None
    """Reads the text instead of the field's type (raises ValueError for a bad value)."""
    normalize: Callable[[str], str] | None = None
    """Applied to the text before the type reads it (``str.lower``)."""
    refuse: str | None = None
    """Not a URL option: the message says this instead (where the setting goes)."""


@dataclass(frozen=True, slots=True)
class UrlOptions:
    """The URL options of one config type: a reader per option name, and deprecated aliases."""

    backend: str
    readers: Mapping[str, Reader]
    refused: Mapping[str, str]
    aliases: Mapping[str, str]

    def known(self) -> str:
        """The option names, for an error message."""
        return ", ".join(sorted(self.readers))


@functools.cache
def url_options(config_type: type, backend: str, aliases: tuple[tuple[str, str], ...] = ()) -> UrlOptions:
    """Derive the URL options of ``config_type`` (a dataclass) from its fields' types; cached per type.

    ``aliases``: (old name, new name) pairs of deprecated spellings.
    """
    hints = typing.get_type_hints(config_type, include_extras=True)
    readers: dict[str, Reader] = {}
    refused: dict[str, str] = {}
    for field in dataclasses.fields(config_type):
        annotation = hints[field.name]
        meta = next((m for m in getattr(annotation, "__metadata__", ()) if isinstance(m, Url)), Url())
        if meta.refuse is not None:
            refused[field.name] = meta.refuse
            continue
        bare = typing.get_args(annotation)[0] if typing.get_origin(annotation) is typing.Annotated else annotation
        readers[field.name] = _reader(bare, meta)
    return UrlOptions(backend, readers, refused, dict(aliases))


def _reader(annotation: Any, meta: Url) -> Reader:
    """A function reading one option's text per its type and metadata; raises ValueError with what it expects."""
    from pydantic import TypeAdapter, ValidationError  # only when a URL is parsed: pydantic is slow to import

    if meta.parse is not None:
        return meta.parse
    members = typing.get_args(annotation) if typing.get_origin(annotation) in (Union, types.UnionType) else ()
    optional = type(None) in members
    inner = next((m for m in members if m is not type(None)), annotation) if members else annotation
    adapter: TypeAdapter[Any] = TypeAdapter(inner)
    expected = _EXPECTED.get(inner, str(inner)) + (" or none" if optional and inner is not str else "")
    normalize = meta.normalize

    def read(text: str) -> Any:
        if normalize is not None:
            text = normalize(text)
        if optional and inner is not str and text.strip().lower() in _NONE_WORDS:
            return None
        try:
            return adapter.validate_python(text)
        except ValidationError as exc:
            detail = exc.errors()[0]["msg"] if exc.errors() else "invalid"
            raise ValueError(f"expected {expected} ({detail})") from None

    return read


def parse_options(options: UrlOptions, query: str) -> dict[str, Any]:
    """Parse ``name=value&...`` into config keyword arguments, per ``options``.

    Raises ConfigurationError naming an unknown option (and listing the known
    ones), a secret or other value that does not belong in a URL (and where it
    goes), an option given twice (an alias and its new name count as one), or
    a value its type refuses — never another exception, whatever the text.
    """
    backend = options.backend
    parsed: dict[str, Any] = {}
    given_as: dict[str, str] = {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False, errors="strict")
    except (ValueError, UnicodeError) as exc:
        raise ConfigurationError(f"the {backend} broker URL's query string is malformed: {exc}") from None
    for given, text in pairs:
        name = options.aliases.get(given, given)
        if name != given:
            logger.warning("%s broker option %s is deprecated; write %s", backend, given, name)
        reader = options.readers.get(name)
        if reader is None:
            if given in options.refused:
                raise ConfigurationError(
                    f"{backend} broker option {given} cannot be given in a URL: {options.refused[given]}"
                )
            raise ConfigurationError(
                f"unknown {backend} broker option {given[:60]!r} in URL; known options: {options.known()}"
            )
        if name in parsed:
            earlier = given_as[name]
            if earlier == given:
                raise ConfigurationError(f"{backend} broker option {given} is given twice in the URL; give it once")
            old, new = (given, earlier) if name == earlier else (earlier, given)
            raise ConfigurationError(f"{backend} broker options {old} and {new} are the same setting; give only {new}")
        try:
            parsed[name] = reader(text)
        except (ValueError, TypeError, ArithmeticError) as exc:
            raise ConfigurationError(
                f"{backend} broker option {given}={text[:60]!r} is invalid: {str(exc)[:200]}"
            ) from None
        given_as[name] = given
    return parsed
