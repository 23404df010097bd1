"""Signing keys and the verification keys they are checked with: a key ring with rotation.

A key belongs to one service (its *owner*): events signed with it are
trusted as coming from that service, whatever their ``source`` says (the
verifier also requires ``source`` to be the owner). Each service has at most
one signing key at a time and any number of verification keys: rotating
makes a new signing key and keeps the old public key, so events signed
before the rotation still verify until an operator retires that key.

Storage (:meth:`KeyRing.load` / :meth:`KeyRing.save`): a directory with one
``<id>.pub`` file per key (JSON: id, owner, created, public key) and, for a
key this process signs with, ``<id>.key`` (the private key, mode 0600).
Environment (:meth:`KeyRing.from_env`): ``CHOREOGRAPH_SIGNING_KEYS`` and
``CHOREOGRAPH_VERIFY_KEYS``, comma-separated ``owner:id:base64url-key``
(the 32-byte Ed25519 seed, resp. public key). Private key material is never
part of a ``repr``, a listing or an error message.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import orjson

from choreograph.core.errors import ConfigurationError
from choreograph.core.names import check_service
from choreograph.security._crypto import Ed25519PrivateKey, Ed25519PublicKey
from choreograph.security.canonical import b64

SIGNING_ENV: Final = "CHOREOGRAPH_SIGNING_KEYS"
VERIFY_ENV: Final = "CHOREOGRAPH_VERIFY_KEYS"
_KEY_ID: Final = re.compile(r"[a-z][a-z0-9_-]{0,62}\.[0-9]{14}\.[0-9a-f]{4}")
_ID_SECRET_LABEL: Final = b"choreograph derived ids v1"


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A public key and the service whose events it vouches for."""

    id: str
    owner: str
    created: str
    public: Ed25519PublicKey = field(repr=False, compare=False)

    def fingerprint(self) -> str:
        """A short SHA-256 fingerprint of the public key, for listings."""
        return hashlib.sha256(self.public.public_bytes_raw()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A service's private signing key (never shown: ``repr`` omits it)."""

    id: str
    owner: str
    created: str
    private: Ed25519PrivateKey = field(repr=False, compare=False)

    def verification(self) -> VerificationKey:
        """The public half, as a verification key."""
        return VerificationKey(self.id, self.owner, self.created, self.private.public_key())

    def id_secret(self) -> bytes:
        """The secret that keys this service's derived output ids (HMAC of the seed; changes with rotation)."""
        return _id_secret(self.private)


@functools.lru_cache(maxsize=64)
def _id_secret(private: Ed25519PrivateKey) -> bytes:
    # Cached per key object: asked for every output a handler emits.
    return hmac.new(private.private_bytes_raw(), _ID_SECRET_LABEL, hashlib.sha256).digest()


def new_key(owner: str, *, now: datetime | None = None) -> SigningKey:
    """Generate a signing key for service ``owner`` with a fresh id ``<owner>.<UTC yyyymmddHHMMSS>.<4 hex>``."""
    check_service(owner)
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    key_id = f"{owner}.{moment:%Y%m%d%H%M%S}.{secrets.token_hex(2)}"
    created = moment.isoformat().replace("+00:00", "Z")
    return SigningKey(key_id, owner, created, Ed25519PrivateKey.generate())


class KeyRing:
    """Signing keys by owner (one each) and verification keys by id. Not thread-safe to modify; reads are."""

    def __init__(self, signing: Iterable[SigningKey] = (), verification: Iterable[VerificationKey] = ()) -> None:
        self._signing: dict[str, SigningKey] = {}
        self._verification: dict[str, VerificationKey] = {}
        for key in verification:
            self.trust(key)
        for signing_key in signing:
            self.add_signing(signing_key)

    def add_signing(self, key: SigningKey) -> None:
        """Make ``key`` its owner's signing key (replacing the previous one) and trust its public half."""
        self._signing[key.owner] = key
        self.trust(key.verification())

    def trust(self, key: VerificationKey) -> None:
        """Accept events signed with ``key`` as coming from ``key.owner``."""
        known = self._verification.get(key.id)
        if known is not None and known.public.public_bytes_raw() != key.public.public_bytes_raw():
            raise ConfigurationError(f"two different public keys have the id {key.id!r}")
        self._verification[key.id] = key

    def signing_key(self, owner: str) -> SigningKey | None:
        """``owner``'s current signing key, or None."""
        return self._signing.get(owner)

    def verification_key(self, key_id: str) -> VerificationKey | None:
        """The verification key with ``key_id``, or None."""
        return self._verification.get(key_id)

    @property
    def signers(self) -> tuple[str, ...]:
        """Owners this ring can sign for."""
        return tuple(self._signing)

    def verification_keys(self) -> list[VerificationKey]:
        """Every verification key, by owner then creation time."""
        return sorted(self._verification.values(), key=lambda k: (k.owner, k.created, k.id))

    def merged(self, other: KeyRing) -> KeyRing:
        """A ring with this one's keys and ``other``'s (other's signing keys win)."""
        return KeyRing(
            [*self._signing.values(), *other._signing.values()], [*self.verification_keys(), *other.verification_keys()]
        )

    # -- storage -----------------------------------------------------------

    @classmethod
    def load(cls, directory: str | Path) -> KeyRing:
        """Read every ``*.pub`` and ``*.key`` of ``directory``; the newest key of an owner signs."""
        path = Path(directory)
        if not path.is_dir():
            raise ConfigurationError(
                f"key directory {str(path)!r} does not exist; create keys with: choreograph keys generate"
            )
        ring = cls()
        for pub in sorted(path.glob("*.pub")):
            doc = _read_json(pub)
            raw = _decode(doc.get("public"), f"{pub.name}: public")
            ring.trust(
                VerificationKey(
                    _key_id(doc, pub), _owner(doc, pub), str(doc.get("created", "")), _public(raw, pub.name)
                )
            )
        signing = [_signing_from(p, _read_json(p)) for p in sorted(path.glob("*.key"))]
        for key in sorted(signing, key=lambda k: (k.created, k.id)):  # the newest per owner is added last
            ring.add_signing(key)
        return ring

    def save(self, directory: str | Path) -> None:
        """Write every key to ``directory`` (private keys 0600); removes ``.key`` files of keys no longer signing."""
        path = Path(directory)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        for key in self._verification.values():
            doc = {
                "id": key.id,
                "owner": key.owner,
                "created": key.created,
                "public": b64(key.public.public_bytes_raw()),
            }
            (path / f"{key.id}.pub").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        current = {signer.id for signer in self._signing.values()}
        for signer in self._signing.values():
            doc = {
                "id": signer.id,
                "owner": signer.owner,
                "created": signer.created,
                "private": b64(signer.private.private_bytes_raw()),
            }
            target = path / f"{signer.id}.key"
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
            os.chmod(target, 0o600)
        for stale in path.glob("*.key"):
            if stale.stem not in current:
                stale.unlink()  # a rotated-out private key: its public half stays for verification

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KeyRing:
        """Read ``CHOREOGRAPH_SIGNING_KEYS`` and ``CHOREOGRAPH_VERIFY_KEYS`` (see the module)."""
        env = os.environ if environ is None else environ
        ring = cls()
        for owner, key_id, raw in _entries(env.get(VERIFY_ENV, ""), VERIFY_ENV):
            ring.trust(VerificationKey(key_id, owner, "", _public(raw, VERIFY_ENV)))
        for owner, key_id, raw in _entries(env.get(SIGNING_ENV, ""), SIGNING_ENV):
            ring.add_signing(SigningKey(key_id, owner, "", _private(raw, SIGNING_ENV)))
        return ring

    def rotate(self, owner: str, *, now: datetime | None = None) -> SigningKey:
        """Give ``owner`` a new signing key; the previous one keeps verifying. Returns the new key."""
        key = new_key(owner, now=now)
        self.add_signing(key)
        return key

    def retire(self, key_id: str) -> None:
        """Stop trusting ``key_id`` (events it signed no longer verify). Refuses a current signing key."""
        if any(k.id == key_id for k in self._signing.values()):
            raise ConfigurationError(f"key {key_id!r} is a current signing key; rotate it first")
        if self._verification.pop(key_id, None) is None:
            raise ConfigurationError(f"no key {key_id!r}")


def _read_json(path: Path) -> dict[str, object]:
    try:
        doc = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ConfigurationError(f"key file {path.name!r} cannot be read: {type(exc).__name__}") from exc
    if not isinstance(doc, dict):
        raise ConfigurationError(f"key file {path.name!r} is not a JSON object")
    return doc


def _key_id(doc: Mapping[str, object], path: Path) -> str:
    key_id = doc.get("id")
    if not isinstance(key_id, str) or not key_id or key_id != path.stem:
        raise ConfigurationError(f"key file {path.name!r}: its id must be its file name without the suffix")
    return key_id


def _owner(doc: Mapping[str, object], path: Path) -> str:
    owner = doc.get("owner")
    if not isinstance(owner, str):
        raise ConfigurationError(f"key file {path.name!r} names no owner")
    return check_service(owner)


def _signing_from(path: Path, doc: Mapping[str, object]) -> SigningKey:
    if path.stat().st_mode & 0o077:
        raise ConfigurationError(f"private key file {path.name!r} is readable by others; run: chmod 600 {path}")
    raw = _decode(doc.get("private"), f"{path.name}: private")
    return SigningKey(_key_id(doc, path), _owner(doc, path), str(doc.get("created", "")), _private(raw, path.name))


def _decode(value: object, where: str) -> bytes:
    if not isinstance(value, str):
        raise ConfigurationError(f"{where} is missing")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ConfigurationError(f"{where} is not base64url") from exc


def _public(raw: bytes, where: str) -> Ed25519PublicKey:
    if len(raw) != 32:
        raise ConfigurationError(f"{where}: an Ed25519 public key is 32 bytes, got {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def _private(raw: bytes, where: str) -> Ed25519PrivateKey:
    if len(raw) != 32:
        raise ConfigurationError(f"{where}: an Ed25519 private key (seed) is 32 bytes")  # never echo the bytes
    return Ed25519PrivateKey.from_private_bytes(raw)


def _entries(text: str, where: str) -> list[tuple[str, str, bytes]]:
    out = []
    for number, item in enumerate(filter(None, (part.strip() for part in text.split(","))), 1):
        owner, sep1, rest = item.partition(":")
        key_id, sep2, value = rest.partition(":")
        if not (sep1 and sep2 and key_id):
            raise ConfigurationError(f"{where}: entry {number} is not owner:key-id:base64url-key")
        out.append((check_service(owner), key_id, _decode(value, f"{where}: entry {number}")))
    return out


def is_key_id(text: str) -> bool:
    """Whether ``text`` has the form of a generated key id."""
    return bool(_KEY_ID.fullmatch(text))
