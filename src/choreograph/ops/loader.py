"""Load an App (or its Topology) from a ``MODULE:ATTRIBUTE`` reference: the one loader every command uses.

``ATTRIBUTE`` defaults to ``app`` and may be dotted (``pkg.mod:holder.app``).
The current directory is importable, as with ``python -m``. Every failure is a
ConfigurationError naming what is missing: the module, the attribute, or what
the object is instead of an App.
"""

from __future__ import annotations

import importlib
import os
import sys

from choreograph.core.errors import ConfigurationError
from choreograph.ops.terminal import remember_broker
from choreograph.runtime.app import App
from choreograph.schema.topology import Topology

EXAMPLE = "choreograph.examples.shop.app:app"


def load_object(spec: str, *, default_attribute: str = "app") -> object:
    """Import ``MODULE:ATTRIBUTE`` and return the object it names.

    Raises ConfigurationError when ``spec`` has no module, the module itself
    cannot be found, or it lacks the attribute. An import error raised *inside*
    the module (one of its own imports is missing) propagates unchanged: it is a
    bug in that module, and hiding it as "cannot import" would mislead.
    """
    module_name, _, attribute = spec.partition(":")
    attribute = attribute or default_attribute
    if not module_name:
        raise ConfigurationError(f"{spec!r} is not MODULE:APP (for example {EXAMPLE})")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only the module named (or one of its parent packages) missing is a usage error.
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ConfigurationError(
                f"cannot import module {module_name!r} ({exc}); run from the project root or fix PYTHONPATH"
            ) from exc
        raise
    target: object = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigurationError(f"module {module_name!r} has no attribute {attribute!r}") from None
    return target


def load_app(spec: str) -> App:
    """Return the App named by ``MODULE:APP``; raise ConfigurationError if it is missing or not an App."""
    app = load_object(spec)
    if not isinstance(app, App):
        raise ConfigurationError(f"{spec} is a {type(app).__name__}, not a choreograph App")
    remember_broker(app.broker_url)  # the App's own URL may hold a password too: errors hide it
    return app


def load_topology(spec: str) -> Topology:
    """Return the Topology of ``MODULE:ATTR``: a Topology itself, or an object (an App) with ``topology()``.

    Raises ConfigurationError naming what is missing or what the object is instead.
    """
    target = load_object(spec)
    if isinstance(target, Topology):
        return target
    if isinstance(target, App):
        remember_broker(target.broker_url)
    method = getattr(target, "topology", None)
    if not callable(method):
        raise ConfigurationError(
            f"{spec} is a {type(target).__name__}: expected a choreograph App (with .topology()) or a Topology"
        )
    topology = method()
    if not isinstance(topology, Topology):
        raise ConfigurationError(f"{spec}.topology() returned {type(topology).__name__}, not a Topology")
    return topology
