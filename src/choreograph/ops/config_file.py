"""``--config FILE``: a command's options from a TOML file, below the command line and the environment.

Each top-level key is an option's name (``stop_timeout`` or ``stop-timeout``
for ``--stop-timeout``, ``app`` for the App argument: the name of its
``CHOREOGRAPH_*`` variable without the prefix); the file supplies a value only where neither the
command line nor the option's ``CHOREOGRAPH_*`` variable did. Precedence,
highest first: command line, environment, config file, built-in default.

The values go through each option's own type conversion (and its error
messages), exactly as if typed on the command line. A key that names no
option of the command is an error naming the key, never ignored: a typo must
not silently fall back to a default.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperArgument, TyperOption

from choreograph.ops.terminal import EXIT_USAGE, fail

ENV_PREFIX = "CHOREOGRAPH_"
CONFIG_ENV = f"{ENV_PREFIX}CONFIG"


def _key_names(ctx: typer.Context) -> dict[str, str]:
    """Map every accepted key (``stop_timeout``, ``stop-timeout``) to the name of the parameter it sets.

    A parameter's key is its ``CHOREOGRAPH_*`` variable without the prefix, in
    lower case (``CHOREOGRAPH_APP`` -> ``app``), else its own name: the file,
    the environment and the command line all use one name per setting.
    """
    names: dict[str, str] = {}
    for param in ctx.command.params:
        if param.name is None or param.name == "config":
            continue
        envvar = param.envvar
        key = envvar[len(ENV_PREFIX) :].lower() if isinstance(envvar, str) and envvar.startswith(ENV_PREFIX) else None
        key = key or param.name
        names[key] = param.name
        names[key.replace("_", "-")] = param.name
    return names


def read_config(ctx: typer.Context, path: Path) -> dict[str, Any]:
    """Return the values of the TOML file at ``path`` keyed by parameter name.

    Raises the usage exit (code 2) with a message naming the file and the
    offending key when the file is unreadable, not TOML, or has a key that is
    no option of ``ctx``'s command.
    """
    try:
        with path.open("rb") as stream:
            doc = tomllib.load(stream)
    except OSError as exc:
        raise fail(f"cannot read config file {path}: {exc.strerror or exc}", EXIT_USAGE) from None
    except tomllib.TOMLDecodeError as exc:
        raise fail(f"config file {path} is not valid TOML: {exc}", EXIT_USAGE) from None
    names = _key_names(ctx)
    values: dict[str, Any] = {}
    for key, value in doc.items():
        name = names.get(key)
        if name is None:
            known = ", ".join(sorted(k for k in names if "-" not in k))
            raise fail(f"config file {path}: unknown key {key!r}; known keys: {known}", EXIT_USAGE)
        param = next(p for p in ctx.command.params if p.name == name)
        if param.multiple and isinstance(value, str):
            value = [value]  # `service = "orders"` means one service, not its letters
        if isinstance(param, TyperOption | TyperArgument):
            try:  # convert now, so that an error names the file and the key (the parser would blame the variable)
                param.get_runtime_param().coerce(value, param=param, ctx=ctx)
            except typer.BadParameter as exc:
                raise fail(f"config file {path}: {key} = {value!r}: {exc.message}", EXIT_USAGE) from None
        values[name] = value
    return values


def _apply(ctx: typer.Context, path: Path | None) -> Path | None:
    if path is not None:
        ctx.default_map = {**(ctx.default_map or {}), **read_config(ctx, path)}
    return path


ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        metavar="FILE",
        envvar=CONFIG_ENV,
        show_envvar=True,
        is_eager=True,  # read before the other options resolve their values
        callback=_apply,
        help="TOML file of option values (keys are option names, e.g. stop_timeout = 10). "
        "The command line and CHOREOGRAPH_* variables override it.",
    ),
]
