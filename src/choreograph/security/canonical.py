"""The byte form of an envelope that a signature covers, and the Merkle tree that lets one signature cover a batch.

**Signed form.** ``b"choreograph.sig.v1\\n"`` followed by the JSON array
(orjson, object keys sorted, no whitespace) of, in this order::

    specversion, id, source, type, datacontenttype, dataschema, subject, time,
    correlationid, causationid, partitionkey, traceparent, tracestate, schemaversion,
    [[name, value], ...]   every extension attribute, sorted by name, but signature and signatureproof
    data

An absent attribute is ``null``, so absent and empty differ; JSON escaping
makes the array unambiguous (no concatenation can shift a boundary). Every
attribute choreograph knows is covered, and every extension but the
signature's own two, so a byte changed, added or removed anywhere but in
those two fails verification. The key id (``signaturekey``) and the
encryption attributes (``enckey``, ``encdata``) are extensions, hence signed.

**Batches.** A publisher signs a batch once: the leaves are
``SHA-256(0x00 || signed form)``, inner nodes ``SHA-256(0x01 || left || right)``
(an odd node is carried up unchanged), and the signature covers
``b"choreograph.sig.v1 root\\n" || root``. Each event carries the path from
its leaf to the root (``signatureproof``: per level one side byte, ``L`` or
``R``, and the sibling's 32 bytes, base64url); a batch of one has no proof.
The 0x00/0x01 prefixes keep a leaf from passing for an inner node.
"""

from __future__ import annotations

import binascii
import hashlib
from collections.abc import Sequence
from typing import Any, Final

import orjson

from choreograph.core import headers as h
from choreograph.core.envelope import Envelope
from choreograph.security.errors import SignatureError

SIGNATURE: Final = h.SIGNATURE
"""Extension: the Ed25519 signature (base64url, no padding) of the batch root."""
SIGNATURE_KEY: Final = "signaturekey"
"""Extension: the id of the key that made :data:`SIGNATURE` (signed itself)."""
SIGNATURE_PROOF: Final = "signatureproof"
"""Extension: the event's Merkle path to the signed root (absent for a batch of one)."""
UNSIGNED_EXTENSIONS: Final = frozenset({SIGNATURE, SIGNATURE_PROOF})

_PREFIX: Final = b"choreograph.sig.v1\n"
_ROOT_PREFIX: Final = b"choreograph.sig.v1 root\n"
_LEAF: Final = b"\x00"
_NODE: Final = b"\x01"
_DIGEST_SIZE: Final = 32
MAX_PROOF_LEVELS: Final = 64
"""A proof longer than this is refused before any hashing (2**64 leaves is more than any batch)."""


def signed_form(envelope: Envelope) -> bytes:
    """Return the bytes a signature covers for ``envelope`` (see the module). Raises SignatureError if not JSON."""
    extensions = envelope.extensions
    ext: list[list[Any]] = (
        sorted([name, value] for name, value in extensions.items() if name not in UNSIGNED_EXTENSIONS)
        if extensions
        else []
    )
    try:
        body = orjson.dumps(
            [
                envelope.specversion,
                envelope.id,
                envelope.source,
                envelope.type,
                envelope.datacontenttype,
                envelope.dataschema,
                envelope.subject,
                envelope.time,
                envelope.correlationid,
                envelope.causationid,
                envelope.partitionkey,
                envelope.traceparent,
                envelope.tracestate,
                envelope.schemaversion,
                ext,
                envelope.data,
            ],
            option=orjson.OPT_SORT_KEYS,
        )
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise SignatureError(f"event {envelope.id!r} has attributes that cannot be signed: {exc}") from exc
    return _PREFIX + body


def rebuilt(
    envelope: Envelope, extensions: dict[str, Any], *, event_id: str | None = None, data: Any = ...
) -> Envelope:
    """Return a copy of ``envelope`` with new ``extensions`` (and id, data): the constructor, not dataclasses.replace.

    Sealing copies every envelope two or three times; ``replace`` costs several
    times the constructor (it inspects the fields on each call).
    """
    e = envelope
    return Envelope(
        e.id if event_id is None else event_id,
        e.source,
        e.type,
        e.data if data is ... else data,
        e.specversion,
        e.time,
        e.subject,
        e.datacontenttype,
        e.dataschema,
        e.correlationid,
        e.causationid,
        e.partitionkey,
        e.traceparent,
        e.tracestate,
        e.schemaversion,
        extensions,
    )


def leaf(envelope: Envelope) -> bytes:
    """Return the Merkle leaf digest of ``envelope``."""
    return hashlib.sha256(_LEAF + signed_form(envelope)).digest()


def root_message(root: bytes) -> bytes:
    """Return the message the batch signature covers."""
    return _ROOT_PREFIX + root


def tree(leaves: Sequence[bytes]) -> tuple[bytes, list[bytes]]:
    """Return the root of ``leaves`` and each leaf's encoded proof (empty for a single leaf)."""
    if not leaves:
        raise ValueError("no leaves")
    paths: list[bytearray] = [bytearray() for _ in leaves]
    members: list[list[int]] = [[i] for i in range(len(leaves))]  # leaf indices under each node of the level
    level = list(leaves)
    sha = hashlib.sha256
    while len(level) > 1:
        up: list[bytes] = []
        up_members: list[list[int]] = []
        for i in range(0, len(level) - 1, 2):
            left, right = level[i], level[i + 1]
            for j in members[i]:
                paths[j] += b"R" + right
            for j in members[i + 1]:
                paths[j] += b"L" + left
            up.append(sha(_NODE + left + right).digest())
            up_members.append(members[i] + members[i + 1])
        if len(level) % 2:
            up.append(level[-1])
            up_members.append(members[-1])
        level, members = up, up_members
    return level[0], [bytes(p) for p in paths]


def encode_proof(path: bytes) -> str:
    """Return ``path`` as the text of :data:`SIGNATURE_PROOF`."""
    return b64(path)


def proof_steps(proof: Any) -> list[tuple[bool, bytes]]:
    """Parse an untrusted :data:`SIGNATURE_PROOF` into (sibling on the right?, sibling) per level; SignatureError."""
    if proof is None:
        return []
    path = _b64(proof, SIGNATURE_PROOF)
    step = 1 + _DIGEST_SIZE
    if not path or len(path) % step or len(path) // step > MAX_PROOF_LEVELS:
        raise SignatureError(f"extension {SIGNATURE_PROOF!r} is not a Merkle path")
    steps = []
    for at in range(0, len(path), step):
        side = path[at]
        if side not in (0x52, 0x4C):  # "R", "L"
            raise SignatureError(f"extension {SIGNATURE_PROOF!r} is not a Merkle path")
        steps.append((side == 0x52, path[at + 1 : at + step]))
    return steps


def parent(node: bytes, sibling_on_right: bool, sibling: bytes) -> bytes:
    """The inner node above ``node`` and its sibling."""
    return hashlib.sha256(_NODE + node + sibling if sibling_on_right else _NODE + sibling + node).digest()


def b64(raw: bytes) -> str:
    """Base64url without padding (the form of every binary attribute)."""
    return binascii.b2a_base64(raw, newline=False).translate(_TO_URLSAFE).rstrip(b"=").decode("ascii")


_TO_URLSAFE: Final = bytes.maketrans(b"+/", b"-_")


def _b64(value: Any, name: str) -> bytes:
    if not isinstance(value, str) or not value.isascii() or len(value) > 8192:
        raise SignatureError(f"extension {name!r} is not base64url text")
    try:
        # Lenient C decoding (it skips characters outside the alphabet), made strict by the check below.
        raw = binascii.a2b_base64(value.encode("ascii").translate(_FROM_URLSAFE) + b"=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as exc:
        raise SignatureError(f"extension {name!r} is not base64url text") from exc
    if b64(raw) != value:  # one text per value: no padding, no stray bits, nothing skipped
        raise SignatureError(f"extension {name!r} is not canonical base64url text")
    return raw


_FROM_URLSAFE: Final = bytes.maketrans(b"-_+/", b"+/-_")  # +/ become -_: outside the alphabet, they fail the check


def unb64(value: Any, name: str) -> bytes:
    """Decode an untrusted base64url attribute, raising SignatureError naming ``name``."""
    return _b64(value, name)
