"""The naming rule for topics, consumer groups, event types and service names.

One rule everywhere, so a name that works on one backend works on all of
them and can never be mistaken for part of a backend's own key or subject
syntax:

* **characters**: ASCII letters ``A-Z a-z``, digits ``0-9``, ``.``, ``_``
  and ``-`` — nothing else (no spaces, ``:``, ``/``, braces, wildcards, line
  breaks, control or non-ASCII characters);
* **length**: 1 to :data:`MAX_LENGTH` (249) characters, Kafka's topic limit;
* **dots**: not first, not last (so ``.`` and ``..`` are never names).

Event types are stricter: they also start and end with a letter or digit
(``shop.order.placed``). Service names are stricter still: a lowercase
letter, then lowercase letters, digits, ``_`` or ``-`` (a service name is
the first part of its handlers' group names ``service.handler``).

Every refusal is a :class:`ConfigurationError` that names the kind of name,
the rule it breaks and the fix. The checks are pure functions of the text,
cached for names that pass, so a backend can call them on every publish.
"""

from __future__ import annotations

import functools
import unicodedata
from typing import Final

from choreograph.core.errors import ConfigurationError

MAX_LENGTH: Final = 249
"""Longest name accepted (Kafka's limit for a topic name)."""

ALLOWED: Final = "letters, digits, '.', '_' or '-'"
"""The allowed characters, as the error messages put them."""

_LOWER: Final = frozenset("abcdefghijklmnopqrstuvwxyz")
_ALNUM: Final = _LOWER | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_CHARS: Final = _ALNUM | frozenset("._-")
_SERVICE_CHARS: Final = _LOWER | frozenset("0123456789_-")
_NOT_DOT: Final = _CHARS - {"."}
_SHOWN: Final = 40
"""Characters of a refused name quoted in its error (a 1 MB name must not make a 1 MB message)."""


def _shown(name: str) -> str:
    if len(name) <= _SHOWN:
        return repr(name)
    return f"{name[:_SHOWN]!r}... ({len(name)} characters)"


def _describe(char: str) -> str:
    if char == "\n":
        return "a newline"
    if char == "\r":
        return "a carriage return"
    if char == "\t":
        return "a tab"
    if char == " ":
        return "a space"
    if unicodedata.category(char).startswith("C"):
        return f"the control character U+{ord(char):04X}"
    if not char.isascii():
        return f"the non-ASCII character {char!r} (U+{ord(char):04X})"
    return f"the character {char!r}"


def _refuse(kind: str, name: str, problem: str, rule: str) -> ConfigurationError:
    return ConfigurationError(f"{kind} name {_shown(name)} {problem}; {rule}")


def _check(
    kind: str, name: object, rule: str, chars: frozenset[str], first: frozenset[str], last: frozenset[str]
) -> str:
    if not isinstance(name, str):
        raise ConfigurationError(f"{kind} name must be a string, got {type(name).__name__}; {rule}")
    if not name:
        raise ConfigurationError(f"{kind} name must not be empty; {rule}")
    if len(name) > MAX_LENGTH:
        raise _refuse(kind, name, f"is {len(name)} characters long", f"use at most {MAX_LENGTH} characters")
    for char in name:  # set lookups, no regex: "$" would let a final newline through, \w unicode letters
        if char not in chars:
            raise _refuse(kind, name, f"contains {_describe(char)}", rule)
    if name[0] not in first:
        raise _refuse(kind, name, f"starts with {name[0]!r}", rule)
    if name[-1] not in last:
        raise _refuse(kind, name, f"ends with {name[-1]!r}", rule)
    return name


_GENERAL_RULE: Final = f"use {ALLOWED} (at most {MAX_LENGTH} characters, no leading or trailing '.')"


def check_topic(topic: str) -> str:
    """Return ``topic`` if it is a valid topic name; raise ConfigurationError naming the rule otherwise."""
    if type(topic) is not str:  # the cache below needs a hashable str
        return _check("topic", topic, _GENERAL_RULE, _CHARS, _NOT_DOT, _NOT_DOT)
    return _cached_topic(topic)


def check_group(group: str) -> str:
    """Return ``group`` if it is a valid consumer group name; raise ConfigurationError otherwise."""
    if type(group) is not str:
        return _check("consumer group", group, _GENERAL_RULE, _CHARS, _NOT_DOT, _NOT_DOT)
    return _cached_group(group)


# Only names that pass are cached (a raise is not), so a hot publish path pays one dict lookup.
@functools.lru_cache(maxsize=4096)
def _cached_topic(topic: str) -> str:
    return _check("topic", topic, _GENERAL_RULE, _CHARS, _NOT_DOT, _NOT_DOT)


@functools.lru_cache(maxsize=4096)
def _cached_group(group: str) -> str:
    return _check("consumer group", group, _GENERAL_RULE, _CHARS, _NOT_DOT, _NOT_DOT)


def check_event_type(event_type: str) -> str:
    """Return ``event_type`` if valid (the general rule, starting and ending with a letter or digit)."""
    return _check(
        "event type",
        event_type,
        f"use {ALLOWED}, starting and ending with a letter or digit, at most {MAX_LENGTH} characters "
        "(e.g. 'shop.order.placed')",
        _CHARS,
        _ALNUM,
        _ALNUM,
    )


def check_service(service: str) -> str:
    """Return ``service`` if valid: a lowercase letter, then lowercase letters, digits, '_' or '-'."""
    return _check(
        "service",
        service,
        f"use lowercase letters, digits, '-' or '_', starting with a letter (at most {MAX_LENGTH} characters)",
        _SERVICE_CHARS,
        _LOWER,
        _SERVICE_CHARS,
    )


def subject_token(name: str) -> str:
    """Escape ``name`` into one NATS subject token that is also a valid stream or consumer name part.

    Letters, digits and ``-`` stay; ``.`` becomes ``_``; every other byte of
    the UTF-8 form becomes ``~hh``. Reversible. Kept in core because the NATS
    backend names its subjects with it and the ACL export must name the same
    subjects without importing the backend.
    """
    out = []
    for byte in name.encode():
        char = chr(byte)
        if char.isascii() and (char.isalnum() or char == "-"):
            out.append(char)
        elif char == ".":
            out.append("_")
        else:
            out.append(f"~{byte:02x}")
    return "".join(out)
