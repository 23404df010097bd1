"""Signed events, publish and consume policy, encrypted payloads (needs the ``security`` extra).

``App(security=Security(keys=KeyRing.load("keys/"), policy=..., encryption=...))``;
see ``docs/security.md`` for the threat model and configuration.
"""

from choreograph.security.encryption import ENCRYPTED, Encryption, Sensitive, sensitive_fields
from choreograph.security.errors import DecryptError, SecurityError, SignatureError, UnauthorizedError
from choreograph.security.guard import Security
from choreograph.security.keyring import KeyRing, SigningKey, VerificationKey, new_key
from choreograph.security.keystore import DataKey, DataKeyStore, FileKeyStore, KvKeyStore, MemoryKeyStore
from choreograph.security.policy import AccessPolicy, Rights

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
