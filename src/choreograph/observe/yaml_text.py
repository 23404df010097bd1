"""Render plain data as block YAML for the generated Prometheus and Alertmanager files.

Strings are written JSON-quoted (a subset of YAML), so no value can be read
back as another type (``"on"``, ``"1e3"``) or break the structure (``": "``,
``"#"``, newlines). Keys are written as given: callers use plain identifiers.
"""

from __future__ import annotations

from typing import Any

import orjson


def to_yaml(data: Any, indent: int = 0) -> str:
    """Render plain data (dicts, lists, strings, numbers) as block YAML with JSON-quoted strings."""
    pad = "  " * indent
    if isinstance(data, dict):
        if not data:
            return "{}\n"
        lines = []
        for key, value in data.items():
            if isinstance(value, dict | list) and value:
                lines.append(f"{pad}{key}:\n{to_yaml(value, indent + 1)}")
            else:
                lines.append(f"{pad}{key}: {_scalar(value)}\n")
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
    if isinstance(value, bool) or value is None or isinstance(value, int | float):
        return orjson.dumps(value).decode()
    return orjson.dumps(str(value)).decode()
