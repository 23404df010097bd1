"""Signed events, publish and consume policy, encrypted payloads (needs the ``security`` extra).

``App(security=Security(keys=KeyRing.load("keys/"), policy=..., encryption=...))``;
see ``docs/security.md`` for the threat model and configuration.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The errors need nothing but core: the runtime imports them whether or not the extra is installed.
from choreograph.security.errors import DecryptError, SecurityError, SignatureError, UnauthorizedError

if TYPE_CHECKING:
    from choreograph.security.encryption import ENCRYPTED, Encryption, Sensitive, sensitive_fields
    from choreograph.security.guard import Security
    from choreograph.security.keyring import KeyRing, SigningKey, VerificationKey, new_key
    from choreograph.security.keystore import DataKey, DataKeyStore, FileKeyStore, KvKeyStore, MemoryKeyStore
    from choreograph.security.policy import AccessPolicy, Rights

# Where each name lives. They are imported on first use, so ``import choreograph`` (whose runtime
# imports the errors above) works without ``cryptography``; using one of these without the extra
# raises MissingExtraError with the install hint.
_HOMES = {
    "ENCRYPTED": "encryption",
    "Encryption": "encryption",
    "Sensitive": "encryption",
    "sensitive_fields": "encryption",
    "Security": "guard",
    "KeyRing": "keyring",
    "SigningKey": "keyring",
    "VerificationKey": "keyring",
    "new_key": "keyring",
    "DataKey": "keystore",
    "DataKeyStore": "keystore",
    "FileKeyStore": "keystore",
    "KvKeyStore": "keystore",
    "MemoryKeyStore": "keystore",
    "AccessPolicy": "policy",
    "Rights": "policy",
}

__all__ = [
    "ENCRYPTED",
    "AccessPolicy",
    "DataKey",
    "DataKeyStore",
    "DecryptError",
    "Encryption",
    "FileKeyStore",
    "KeyRing",
    "KvKeyStore",
    "MemoryKeyStore",
    "Rights",
    "Security",
    "SecurityError",
    "Sensitive",
    "SignatureError",
    "SigningKey",
    "UnauthorizedError",
    "VerificationKey",
    "new_key",
    "sensitive_fields",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'choreograph.security' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"choreograph.security.{home}"), name)
    globals()[name] = value  # imported once: later lookups do not come back here
    return value
