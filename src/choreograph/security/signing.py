"""Sign batches of envelopes and verify consumed ones.

A publisher signs what it sends in one go (one Ed25519 signature per batch,
see :mod:`choreograph.security.canonical`); a verifier checks the event's
Merkle path against the signed root and remembers the roots it verified, so
the events of one batch cost one signature check between them.
"""

from __future__ import annotations

import hmac
from collections import OrderedDict
from collections.abc import Sequence
from typing import Final

from choreograph.core.envelope import Envelope
from choreograph.core.errors import ConfigurationError
from choreograph.core.ids import id_time_ms
from choreograph.security._crypto import InvalidSignature
from choreograph.security.canonical import (
    SIGNATURE,
    SIGNATURE_KEY,
    SIGNATURE_PROOF,
    UNSIGNED_EXTENSIONS,
    b64,
    encode_proof,
    leaf,
    rebuilt,
    root_message,
    root_of,
    tree,
    unb64,
)
from choreograph.security.errors import SignatureError
from choreograph.security.keyring import KeyRing, VerificationKey

VERIFIED_ROOTS: Final = 4096
"""How many verified (key, root, signature) triples a verifier remembers (least recently used go first)."""


def sign(ring: KeyRing, envelopes: Sequence[Envelope]) -> list[Envelope]:
    """Return ``envelopes`` signed, one signature per source among them. Raises ConfigurationError without a key."""
    by_source: dict[str, list[int]] = {}
    for index, envelope in enumerate(envelopes):
        by_source.setdefault(envelope.source, []).append(index)
    out = list(envelopes)
    for source, indices in by_source.items():
        key = ring.signing_key(source)
        if key is None:
            raise ConfigurationError(
                f"signing is on but there is no signing key for source {source!r}; "
                f"create one with: choreograph keys generate {source}"
            )
        marked = []
        for i in indices:
            extensions = out[i].extensions
            if extensions:  # a re-sent envelope's old signature attributes are dropped, never signed over
                extensions = {k: v for k, v in extensions.items() if k not in UNSIGNED_EXTENSIONS}
            marked.append((i, {**extensions, SIGNATURE_KEY: key.id}))
        root, paths = tree([leaf(rebuilt(out[i], extensions)) for i, extensions in marked])
        signature = b64(key.private.sign(root_message(root)))
        for (i, extensions), path in zip(marked, paths, strict=True):
            extensions[SIGNATURE] = signature
            if path:
                extensions[SIGNATURE_PROOF] = encode_proof(path)
            out[i] = rebuilt(out[i], extensions)
    return out


def keyed_id(secret: bytes, event_id: str) -> str:
    """Return a UUIDv7 that only holders of ``secret`` can compute from ``event_id`` (same time part).

    Deterministic: a re-run after a crash emits the same id, so downstream
    inboxes still drop the duplicate; without the secret the id cannot be
    predicted from the public (incoming id, group, position).
    """
    digest = hmac.digest(secret, event_id.encode("utf-8", "surrogatepass"), "sha256")
    ms = _uuid7_ms(event_id)
    rand = int.from_bytes(digest[:10], "big")
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | ((rand >> 62) & 0xFFF) << 64 | 0b10 << 62
    value |= rand & 0x3FFF_FFFF_FFFF_FFFF
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _uuid7_ms(event_id: str) -> int:
    """The time part of a canonical lowercase UUIDv7 without parsing it as a UUID; :func:`id_time_ms` otherwise."""
    if len(event_id) == 36 and event_id[14] == "7" and event_id[8] == event_id[13] == "-":
        head = event_id[:8] + event_id[9:13]
        if all(c in _HEX for c in head):
            return int(head, 16)
    return id_time_ms(event_id)


_HEX: Final = frozenset("0123456789abcdef")


class Verifier:
    """Checks signatures against a key ring. Safe to share within one event loop (not across threads)."""

    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring
        self._verified: OrderedDict[tuple[str, bytes, str], None] = OrderedDict()

    def verify(self, envelope: Envelope) -> VerificationKey:
        """Return the key that signed ``envelope``; raise SignatureError if unsigned, unknown or not matching.

        Never raises anything else, whatever the attributes hold.
        """
        extensions = envelope.extensions
        signature_text = extensions.get(SIGNATURE)
        if signature_text is None:
            raise SignatureError(f"event {envelope.type} {envelope.id!r} from {envelope.source!r} is not signed")
        key_id = extensions.get(SIGNATURE_KEY)
        if not isinstance(key_id, str):
            raise SignatureError(f"event {envelope.id!r} names no key ({SIGNATURE_KEY!r})")
        key = self.ring.verification_key(key_id)
        if key is None:
            raise SignatureError(f"event {envelope.id!r} is signed with unknown key {key_id[:80]!r}")
        if not isinstance(signature_text, str):
            raise SignatureError(f"event {envelope.id!r}: extension {SIGNATURE!r} is not base64url text")
        root = root_of(leaf(envelope), extensions.get(SIGNATURE_PROOF))
        memo = (key.id, root, signature_text)  # only canonical texts are remembered: one text per signature
        if memo in self._verified:
            self._verified.move_to_end(memo)
            return key
        signature = unb64(signature_text, SIGNATURE)
        if len(signature) != 64:
            raise SignatureError(f"event {envelope.id!r}: an Ed25519 signature is 64 bytes, got {len(signature)}")
        try:
            key.public.verify(signature, root_message(root))
        except InvalidSignature:
            raise SignatureError(
                f"event {envelope.type} {envelope.id!r}: the signature of key {key.id!r} does not match "
                "(altered, or signed by another key)"
            ) from None
        self._verified[memo] = None
        if len(self._verified) > VERIFIED_ROOTS:
            self._verified.popitem(last=False)
        return key
