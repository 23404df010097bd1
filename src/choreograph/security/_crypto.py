"""Import the ``cryptography`` package, or raise the install hint of the ``security`` extra."""

from __future__ import annotations

from choreograph.core.errors import MissingExtraError

try:
    from cryptography.exceptions import InvalidSignature, InvalidTag
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
except ImportError:  # pragma: no cover - the extra is in dev
    raise MissingExtraError("Signed events and encrypted payloads", "security", "cryptography") from None

__all__ = ["AESGCM", "Ed25519PrivateKey", "Ed25519PublicKey", "InvalidSignature", "InvalidTag"]
