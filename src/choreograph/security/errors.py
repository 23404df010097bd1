"""Errors of the security layer, each naming the dead-letter reason it ends in.

::

    ChoreographError
    └── SecurityError                 .reason: the dead-letter reason
        ├── SignatureError            "signature": unsigned, wrongly signed or tampered
        ├── UnauthorizedError         "unauthorized": the verified signer may not publish this type
        └── DecryptError              "decrypt": no key (shredded, unknown) or a ciphertext that does not open

Opening a consumed event (:meth:`choreograph.security.Security.open`) raises
only these, whatever the bytes: the consumer dead-letters the event with
``reason`` and goes on.
"""

from __future__ import annotations

from typing import ClassVar

from choreograph.core.enums import DeadLetterReason
from choreograph.core.errors import ChoreographError


class SecurityError(ChoreographError):
    """A consumed event failed a security check; it is never handled."""

    reason: ClassVar[str] = DeadLetterReason.SECURITY


class SignatureError(SecurityError, ValueError):
    """The event is unsigned where a signature is required, signed by an unknown key, or altered since signing."""

    reason: ClassVar[str] = DeadLetterReason.SIGNATURE


class UnauthorizedError(SecurityError, PermissionError):
    """The event's verified signer may not publish its type (or sign for its source)."""

    reason: ClassVar[str] = DeadLetterReason.UNAUTHORIZED


class DecryptError(SecurityError, ValueError):
    """An encrypted payload cannot be read: its data key is gone or unknown, or the ciphertext does not open."""

    reason: ClassVar[str] = DeadLetterReason.DECRYPT
