"""Encrypt event payloads (AES-256-GCM) with a data key per subject.

What is encrypted is declared per event class: fields annotated
:class:`Sensitive` (``card: Annotated[str, Sensitive()]``), or, for a class
with no such field, its whole payload. On the wire:

- ``data`` keeps its shape with every encrypted value replaced by the text
  ``"<encrypted>"`` (the whole of ``data`` for a whole-payload class), so the
  CLI, the trace and dead-letter listings show ``<encrypted>`` to anyone
  without the key;
- extension ``encdata`` holds the ciphertext (base64url of a 12-byte nonce
  and AES-GCM output) of the JSON of the encrypted values, and ``enckey`` the
  version of the data key used, as ``v<n>`` (never a bare number: binary-mode
  headers read a JSON-looking value back as JSON). The key's subject is the envelope's
  ``subject``, else its partition key, else ``""``.

The AES-GCM associated data binds the ciphertext to the event (id, source,
type, subject, version): moved into another event it does not decrypt. With
signing on, ``encdata`` and ``enckey`` are also signed (encrypt, then sign).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from choreograph.core.envelope import Envelope
from choreograph.core.event import Event
from choreograph.security._crypto import AESGCM, InvalidTag
from choreograph.security.canonical import b64, rebuilt, unb64
from choreograph.security.errors import DecryptError, SignatureError
from choreograph.security.keystore import DataKeyStore

ENCRYPTED: Final = "<encrypted>"
"""What an encrypted value reads as without its key."""
ENCRYPTED_DATA: Final = "encdata"
ENCRYPTION_KEY: Final = "enckey"
_MAX_VERSION: Final = 2**31 - 1


class Sensitive:
    """Marks a model field for encryption: ``card: Annotated[str, Sensitive()]``."""

    def __repr__(self) -> str:
        return "Sensitive()"


def sensitive_fields(model: type[Event]) -> tuple[str, ...]:
    """The JSON names of ``model``'s fields marked :class:`Sensitive`, in declaration order."""
    names = []
    for name, info in model.model_fields.items():
        if any(isinstance(m, Sensitive) or m is Sensitive for m in info.metadata):
            names.append(info.serialization_alias or info.alias or name)
    return tuple(names)


def subject_of(envelope: Envelope) -> str:
    """The subject whose data key encrypts ``envelope``: its ``subject``, else its partition key, else ``""``."""
    return envelope.subject or envelope.partitionkey or ""


@dataclass(frozen=True, slots=True)
class Encryption:
    """Which event types are encrypted, how, and where their keys are.

    ``rules`` maps an event type to the fields to encrypt (None: the whole
    payload). Build it from classes with :meth:`of`.
    """

    store: DataKeyStore
    rules: Mapping[str, tuple[str, ...] | None]

    @classmethod
    def of(cls, store: DataKeyStore, events: Iterable[type[Event]]) -> Encryption:
        """Encrypt each class's :class:`Sensitive` fields, or its whole payload if it marks none."""
        return cls(store, {e.event_type(): sensitive_fields(e) or None for e in events})

    async def encrypt(self, envelope: Envelope) -> Envelope:
        """Return ``envelope`` with its payload encrypted if its type has a rule (else unchanged)."""
        if envelope.type not in self.rules or ENCRYPTED_DATA in envelope.extensions:
            return envelope
        fields = self.rules[envelope.type]
        data = envelope.data
        shown: Any
        if fields is None:
            secret, shown = data, ENCRYPTED
        else:
            if not isinstance(data, dict):
                return envelope
            secret = {name: data[name] for name in fields if name in data}
            shown = {name: ENCRYPTED if name in secret else value for name, value in data.items()}
        subject = subject_of(envelope)
        key = await self.store.current(subject)
        nonce = os.urandom(12)
        sealed = _cipher(key.key).encrypt(nonce, orjson.dumps(secret), _aad(envelope, subject, key.version))
        extensions = {**envelope.extensions, ENCRYPTED_DATA: b64(nonce + sealed), ENCRYPTION_KEY: f"v{key.version}"}
        return rebuilt(envelope, extensions, data=shown)

    async def decrypt(self, envelope: Envelope) -> Envelope:
        """Return ``envelope`` with its payload decrypted (unchanged if not encrypted). Raises only DecryptError."""
        extensions = envelope.extensions
        blob_text = extensions.get(ENCRYPTED_DATA)
        if blob_text is None:
            if envelope.type in self.rules:
                # Plaintext where ciphertext is expected: a producer without encryption, or a downgrade.
                raise DecryptError(f"event {envelope.type} {envelope.id!r} should be encrypted but is not")
            return envelope
        version_text = extensions.get(ENCRYPTION_KEY)
        if not (
            isinstance(version_text, str)
            and version_text[:1] == "v"
            and version_text[1:].isascii()
            and version_text[1:].isdigit()
            and len(version_text) <= 11
            and 0 < int(version_text[1:]) <= _MAX_VERSION
        ):
            raise DecryptError(f"event {envelope.id!r}: extension {ENCRYPTION_KEY!r} is not a key version")
        try:
            blob = unb64(blob_text, ENCRYPTED_DATA)
        except SignatureError as exc:
            raise DecryptError(str(exc)) from None
        if len(blob) < 12 + 16:
            raise DecryptError(f"event {envelope.id!r}: extension {ENCRYPTED_DATA!r} is too short")
        version, subject = int(version_text[1:]), subject_of(envelope)
        key = await self.store.get(subject, version)
        if key is None:
            raise DecryptError(
                f"event {envelope.type} {envelope.id!r}: no data key version {version} for its subject "
                "(forgotten, or from another key store)"
            )
        try:
            plain = _cipher(key.key).decrypt(blob[:12], blob[12:], _aad(envelope, subject, version))
            secret = orjson.loads(plain)
        except (InvalidTag, orjson.JSONDecodeError):
            raise DecryptError(
                f"event {envelope.type} {envelope.id!r}: the payload does not decrypt (altered?)"
            ) from None
        data = envelope.data
        if isinstance(data, dict) and isinstance(secret, dict):
            data = {**data, **secret}
        elif data == ENCRYPTED:
            data = secret
        else:
            raise DecryptError(f"event {envelope.id!r}: encrypted values do not fit its data")
        rest = {k: v for k, v in extensions.items() if k not in (ENCRYPTED_DATA, ENCRYPTION_KEY)}
        return rebuilt(envelope, rest, data=data)


@functools.lru_cache(maxsize=1024)
def _cipher(key: bytes) -> AESGCM:
    # One AESGCM object per data key (its key schedule), not one per event.
    return AESGCM(key)


def _aad(envelope: Envelope, subject: str, version: int) -> bytes:
    try:
        return orjson.dumps(["choreograph.enc.v1", envelope.id, envelope.source, envelope.type, subject, version])
    except orjson.JSONEncodeError as exc:  # a lone surrogate in an attribute
        raise DecryptError(f"event attributes cannot be bound to the ciphertext: {exc}") from None
