"""Render plain data as block YAML for the generated Prometheus and Alertmanager files.

Strings are written JSON-quoted (a subset of YAML), so no value can be read
back as another type (``"on"``, ``"1e3"``) or break the structure (``": "``,
``"#"``, newlines); the characters YAML forbids raw (DEL, C1 controls, BOM)
are escaped as JSON-style ``\\uXXXX`` escapes. Keys are written plain when they are identifiers
YAML reads as text (not ``on``, ``no``, ``null``...), JSON-quoted otherwise.
"""

from __future__ import annotations

import re
from typing import Any, Final

import orjson

_UNPRINTABLE: Final = re.compile("[\x7f-\x9f\ufeff\ufffe\uffff]")
"""Characters YAML does not allow (or reads differently) inside a double-quoted scalar; JSON leaves them raw."""
_PLAIN_KEY: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_YAML11_WORDS: Final = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})


def _key(key: object) -> str:
    text = str(key)
    if _PLAIN_KEY.fullmatch(text) and text.lower() not in _YAML11_WORDS:
        return text
    return _scalar(text)


def to_yaml(data: Any, indent: int = 0) -> str:
    """Render plain data (dicts, lists, strings, numbers) as block YAML with JSON-quoted strings."""
    pad = "  " * indent
    if isinstance(data, dict):
        if not data:
            return "{}\n"
        lines = []
        for key, value in data.items():
            if isinstance(value, dict | list) and value:
                lines.append(f"{pad}{_key(key)}:\n{to_yaml(value, indent + 1)}")
            else:
                lines.append(f"{pad}{_key(key)}: {_scalar(value)}\n")
        return "".join(lines)
    if isinstance(data, list):
        if not data:
            return "[]\n"
        lines = []
        for item in data:
            body = to_yaml(item, indent + 1) if isinstance(item, dict | list) and item else f"{_scalar(item)}\n"
            lines.append(f"{pad}- {body.lstrip()}")
        return "".join(lines)
    return f"{pad}{_scalar(data)}\n"


def _scalar(value: Any) -> str:
    if isinstance(value, dict | list):
        return "{}" if isinstance(value, dict) else "[]"
    if isinstance(value, float):
        text = orjson.dumps(value).decode()
        mantissa, e, exponent = text.partition("e")
        # YAML 1.1 readers take 1e+308 for a string: give the mantissa a point, as YAML 1.1 requires.
        return f"{mantissa}.0e{exponent}" if e and "." not in mantissa else text
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return orjson.dumps(value).decode()
    return _UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", orjson.dumps(str(value)).decode())
