"""Sign batches of envelopes and verify consumed ones.

A publisher signs what it sends in one go (one Ed25519 signature per batch,
see :mod:`choreograph.security.canonical`); a verifier checks the event's
Merkle path against the signed root and remembers the tree nodes it verified,
so the events of one batch cost one signature check between them and each
walks its path only up to a node already verified (two hashes on average).
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
    parent,
    proof_steps,
    rebuilt,
    root_message,
    tree,
    unb64,
)
from choreograph.security.errors import SignatureError
from choreograph.security.keyring import KeyRing, VerificationKey

VERIFIED_NODES: Final = 65_536
"""How many verified Merkle nodes (with their key and signature) a verifier remembers, least recently used first."""


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
        self._verified: OrderedDict[tuple[str, bytes], str] = OrderedDict()

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
        verified = self._verified
        node = leaf(envelope)
        nodes = [node]
        for right, sibling in proof_steps(extensions.get(SIGNATURE_PROOF)):
            # A node on a path already checked under this key and signature is authentic, and so is every
            # node that hashes up to it: the rest of the path need not be walked, nor the signature checked.
            if verified.get((key.id, node)) == signature_text:
                return self._remember(key, nodes, signature_text)
            node = parent(node, right, sibling)
            nodes.append(node)
        if verified.get((key.id, node)) == signature_text:
            return self._remember(key, nodes, signature_text)
        signature = unb64(signature_text, SIGNATURE)
        if len(signature) != 64:
            raise SignatureError(f"event {envelope.id!r}: an Ed25519 signature is 64 bytes, got {len(signature)}")
        try:
            key.public.verify(signature, root_message(nodes[-1]))
        except InvalidSignature:
            raise SignatureError(
                f"event {envelope.type} {envelope.id!r}: the signature of key {key.id!r} does not match "
                "(altered, or signed by another key)"
            ) from None
        return self._remember(key, nodes, signature_text)

    def _remember(self, key: VerificationKey, nodes: list[bytes], signature_text: str) -> VerificationKey:
        """Remember ``nodes`` (a path found authentic) as verified under ``key``; return ``key``."""
        verified = self._verified
        for node in nodes:
            verified[(key.id, node)] = signature_text
            verified.move_to_end((key.id, node))
        while len(verified) > VERIFIED_NODES:
            verified.popitem(last=False)
        return key
