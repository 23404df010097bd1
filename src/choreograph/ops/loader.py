"""Load an App from a ``MODULE:ATTRIBUTE`` reference, as the CLI does."""

from __future__ import annotations

import importlib
import os
import sys

from choreograph.core.errors import ConfigurationError
from choreograph.ops.terminal import remember_broker
from choreograph.runtime.app import App


def load_app(spec: str) -> App:
    """Import ``MODULE:ATTRIBUTE`` (attribute defaults to ``app``) and return the App.

    The current directory is importable, as with ``python -m``. Raises
    ConfigurationError naming the module or attribute that is missing.
    """
    module_name, _, attribute = spec.partition(":")
    attribute = attribute or "app"
    if not module_name:
        raise ConfigurationError(f"{spec!r} is not MODULE:APP (for example choreograph.examples.shop.app:app)")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigurationError(
                f"cannot import module {module_name!r}: {exc}. Run from the project root or fix PYTHONPATH"
            ) from exc
        raise
    try:
        app = getattr(module, attribute)
    except AttributeError:
        raise ConfigurationError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if not isinstance(app, App):
        raise ConfigurationError(f"{spec} is a {type(app).__name__}, not a choreograph App")
    remember_broker(app.broker_url)  # the App's own URL may hold a password too: errors hide it
    return app
