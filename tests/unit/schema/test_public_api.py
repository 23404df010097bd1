"""The public API of choreograph.schema is declared once, in ``__all__``."""

from __future__ import annotations

import importlib
import subprocess
import sys

import choreograph.schema


def test_all_names_exist_and_are_sorted_in_groups() -> None:
    for name in choreograph.schema.__all__:
        assert hasattr(choreograph.schema, name), name
    assert len(set(choreograph.schema.__all__)) == len(choreograph.schema.__all__)


def test_schema_layer_does_not_import_jsonschema_eagerly() -> None:
    code = "import sys, choreograph.schema; print('jsonschema' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_modules_import_only_core_stdlib_and_pydantic() -> None:
    allowed = ("choreograph.core", "choreograph.schema")
    for name in ("asyncapi", "catalog", "compatibility", "registry", "stores", "upcast", "validation"):
        module = importlib.import_module(f"choreograph.schema.{name}")
        for value in vars(module).values():
            origin = getattr(value, "__module__", "") or ""
            if origin.startswith("choreograph."):
                assert origin.startswith(allowed), (name, origin)
