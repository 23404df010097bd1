"""The ``choreograph`` command line: run workers and operate the log.

Every command group lives in its own ``ops/*_cli.py`` module exposing
``register(cli)``; :data:`COMMAND_GROUPS` mounts them, in the order ``--help``
lists them. A new command is a new module added to that list.

Exit codes: 0 ok; 1 the command found a problem (not found, failures);
2 bad input (arguments, JSON, module, URL); 3 the broker is unreachable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import typer

from choreograph.ops import (
    audit_cli,
    backup_cli,
    demo_cli,
    dlq_cli,
    flows_cli,
    log_cli,
    observe_cli,
    publish_cli,
    relay_cli,
    replay_cli,
    run_cli,
    schema_cli,
    security_cli,
)
from choreograph.ops.help_format import PlainHelpGroup

__all__ = ["COMMAND_GROUPS", "cli", "main"]

COMMAND_GROUPS: Final[tuple[Callable[[typer.Typer], None], ...]] = (
    run_cli.register,  # run
    publish_cli.register,  # publish
    demo_cli.register,  # demo
    dlq_cli.register,  # dlq groups/list/show/retry/edit/archive/restore/note/history/purge
    audit_cli.register,  # audit
    schema_cli.register,  # schema ..., catalog, asyncapi
    log_cli.register,  # tail, topics, lag
    replay_cli.register,  # replay reset/group/copy
    relay_cli.register,  # relay, outbox install/status
    flows_cli.register,  # flows, flow show, observe
    backup_cli.register,  # backup, restore
    observe_cli.register,  # slo, trace, export ...
    security_cli.register,  # keys generate/list/rotate, export acl
)
"""Each command group's ``register``; mounted once, in this order."""

cli = typer.Typer(
    name="choreograph",
    help="Event choreography toolkit: run services, inspect topics, lag and dead letters, run the demo.",
    cls=PlainHelpGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
for register in COMMAND_GROUPS:
    register(cli)


def main() -> None:
    """Entry point of the ``choreograph`` script."""
    cli()
