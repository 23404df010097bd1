"""Sealing what the CLI publishes itself (``publish``, ``dlq edit``): the operator's signing keys.

A command that writes an event into the log must seal it as an App would, or
consumers requiring signatures dead-letter it (reason ``signature``). Keys
come from ``--keys DIR`` (default ``$CHOREOGRAPH_KEYS_DIR``, the directory
``choreograph keys`` writes) and from ``$CHOREOGRAPH_SIGNING_KEYS`` /
``$CHOREOGRAPH_VERIFY_KEYS``; with ``--app`` the App's own security
(its keys, and its encryption) is used as well.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final

import typer

from choreograph.core.errors import ConfigurationError

if TYPE_CHECKING:
    from choreograph.security.guard import Security

KEYS_DIR_ENV: Final = "CHOREOGRAPH_KEYS_DIR"

KeysOption = Annotated[
    Path | None,
    typer.Option(
        "--keys",
        metavar="DIR",
        envvar=KEYS_DIR_ENV,
        show_envvar=True,
        help="Key directory (choreograph keys generate): sign what is written with the source's key.",
    ),
]


def _env_has_keys() -> bool:
    return any(os.environ.get(name) for name in ("CHOREOGRAPH_SIGNING_KEYS", "CHOREOGRAPH_VERIFY_KEYS"))


def operator_security(app_security: Security | None, keys: Path | None, source: str, what: str) -> Security | None:
    """The Security to seal an event of ``source`` with, or None to write it unsealed.

    - the App's security (``--app``) and keys from ``keys`` and the
      environment are merged; the event is signed when a signing key for
      ``source`` is among them (and encrypted per the App's encryption);
    - raises ConfigurationError naming the fix when signing is expected and
      impossible: the App signs its events (its consumers require
      signatures), or ``--keys`` was given, but no key signs for ``source``;
    - None when no keys are configured at all (the event goes out unsigned,
      as before signing existed).

    ``what`` names the command's event in messages ("the event", "the edited copy").
    """
    if app_security is None and keys is None and not _env_has_keys():
        return None
    from choreograph.security.guard import Security  # the security extra is needed only from here
    from choreograph.security.keyring import KeyRing

    ring = KeyRing.from_env()
    if keys is not None:
        ring = KeyRing.load(keys).merged(ring)
    if app_security is not None and app_security.keys is not None:
        ring = app_security.keys.merged(ring)
    signs = ring.signing_key(source) is not None
    expected = keys is not None or (app_security is not None and app_security.signing)
    if not signs and expected:
        where = f"in {str(keys)!r}" if keys is not None else "in the App's key ring or $CHOREOGRAPH_SIGNING_KEYS"
        raise ConfigurationError(
            f"{what} must be signed (consumers dead-letter unsigned events with reason 'signature'), "
            f"but there is no signing key for source {source!r} {where}; pass --keys DIR holding its key "
            f"(choreograph keys generate {source} makes one)"
        )
    encryption = app_security.encryption if app_security is not None else None
    if not signs and encryption is None:
        return None
    return Security(keys=ring if signs else None, encryption=encryption)
