"""Signatures: what they cover, batches, key rotation, key storage."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from choreograph.core.codec import decode, encode
from choreograph.core.envelope import Envelope
from choreograph.core.errors import ConfigurationError
from choreograph.security import KeyRing, SignatureError, new_key
from choreograph.security.canonical import SIGNATURE, SIGNATURE_KEY, SIGNATURE_PROOF, b64
from choreograph.security.signing import Verifier, sign


def envelope(n: int = 0, **changes: object) -> Envelope:
    base = Envelope(
        id=f"0190f5c4-0000-7000-8000-{n:012d}",
        source="payment",
        type="shop.payment.captured",
        data={"order_id": f"o-{n}", "amount_cents": 100 + n, "lines": [{"sku": "a", "n": 1}]},
        time="2026-12-06T05:00:00.000001Z",
        subject="customer-7",
        correlationid="c-1",
        causationid="c-0",
        partitionkey=f"o-{n}",
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        schemaversion=1,
        extensions={"tenant": "eu"},
    )
    return base.replace(**changes) if changes else base


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing([new_key("payment")])


def test_a_signed_batch_verifies_after_an_encode_decode_round_trip(ring: KeyRing) -> None:
    # Given a batch of five events signed together
    signed = sign(ring, [envelope(n) for n in range(5)])
    # Then they share one signature, each with its own proof, and each verifies on its own after the wire
    assert len({e.extensions[SIGNATURE] for e in signed}) == 1
    verifier = Verifier(ring)
    for e in signed:
        assert SIGNATURE_PROOF in e.extensions
        assert verifier.verify(decode(encode(e))).owner == "payment"


def test_a_single_event_carries_no_proof(ring: KeyRing) -> None:
    (signed,) = sign(ring, [envelope()])
    assert SIGNATURE_PROOF not in signed.extensions
    Verifier(ring).verify(signed)


TAMPERING = [
    ("id", "0190f5c4-0000-7000-8000-999999999999"),
    ("source", "inventory"),
    ("type", "shop.payment.declined"),
    ("time", "2026-12-06T05:00:00.000002Z"),
    ("subject", "customer-8"),
    ("subject", None),
    ("correlationid", "c-2"),
    ("causationid", None),
    ("partitionkey", "o-9"),
    ("traceparent", None),
    ("tracestate", "x=1"),
    ("schemaversion", 2),
    ("datacontenttype", "text/plain"),
    ("dataschema", "urn:x"),
    ("data", {"order_id": "o-0", "amount_cents": 1, "lines": [{"sku": "a", "n": 1}]}),
    ("data", {"order_id": "o-0", "amount_cents": 100, "lines": [{"sku": "a", "n": 2}]}),
    ("data", None),
]


@pytest.mark.parametrize(("attribute", "value"), TAMPERING)
def test_a_changed_attribute_fails_verification(ring: KeyRing, attribute: str, value: object) -> None:
    # Given an event signed in a batch of three
    signed = sign(ring, [envelope(0), envelope(1), envelope(2)])[0]
    # When one attribute is changed on the way
    tampered = signed.replace(**{attribute: value})
    # Then verification fails
    with pytest.raises(SignatureError):
        Verifier(ring).verify(tampered)


@pytest.mark.parametrize("change", ["add", "remove", "alter", "key"])
def test_a_changed_extension_fails_verification(ring: KeyRing, change: str) -> None:
    (signed,) = sign(ring, [envelope()])
    ext = dict(signed.extensions)
    if change == "add":
        ext["injected"] = "1"
    elif change == "remove":
        del ext["tenant"]
    elif change == "alter":
        ext["tenant"] = "us"
    else:
        other = new_key("payment")
        ring.add_signing(other)
        ext[SIGNATURE_KEY] = other.id  # the signature checked against another trusted key
    with pytest.raises(SignatureError):
        Verifier(ring).verify(signed.replace(extensions=ext))


def test_a_byte_flipped_anywhere_in_the_encoded_event_is_caught(ring: KeyRing) -> None:
    # Given the encoded bytes of a signed event
    raw = bytearray(encode(sign(ring, [envelope(1), envelope(2)])[0]))
    verifier = Verifier(ring)
    caught = 0
    # When each byte in turn is changed
    for at in range(len(raw)):
        changed = bytearray(raw)
        changed[at] = ord("0") if raw[at] != ord("0") else ord("1")
        try:
            event = decode(bytes(changed))
        except Exception:  # no longer a CloudEvent: the decoder's to refuse
            caught += 1
            continue
        try:
            verifier.verify(event)
        except SignatureError:
            caught += 1
            continue
        # the only changes that still verify keep the event's meaning: JSON whitespace or escapes
        assert event == decode(bytes(raw)), f"byte {at} changed the event and still verified"
    assert caught > len(raw) * 0.9


def test_a_proof_moved_to_another_event_of_the_batch_fails(ring: KeyRing) -> None:
    a, b = sign(ring, [envelope(1), envelope(2)])
    swapped = a.replace(extensions={**a.extensions, SIGNATURE_PROOF: b.extensions[SIGNATURE_PROOF]})
    with pytest.raises(SignatureError):
        Verifier(ring).verify(swapped)


def test_after_rotation_old_events_still_verify_and_new_ones_use_the_new_key(ring: KeyRing) -> None:
    old = sign(ring, [envelope()])[0]
    new = ring.rotate("payment")
    fresh = sign(ring, [envelope()])[0]
    verifier = Verifier(ring)
    assert verifier.verify(old).id != new.id
    assert verifier.verify(fresh).id == new.id
    # Retiring the old key makes its events unverifiable
    ring.retire(old.extensions[SIGNATURE_KEY])
    with pytest.raises(SignatureError, match="unknown key"):
        Verifier(ring).verify(old)


def test_the_ring_round_trips_through_a_directory_with_private_keys_owner_only(ring: KeyRing, tmp_path: Path) -> None:
    old = ring.signing_key("payment")
    ring.rotate("payment")
    ring.save(tmp_path)
    assert old is not None and not (tmp_path / f"{old.id}.key").exists()  # a rotated-out private key is removed
    for key_file in tmp_path.glob("*.key"):
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    loaded = KeyRing.load(tmp_path)
    assert [k.id for k in loaded.verification_keys()] == [k.id for k in ring.verification_keys()]
    signed = sign(loaded, [envelope()])[0]
    Verifier(ring).verify(signed)


def test_a_private_key_file_readable_by_others_is_refused(ring: KeyRing, tmp_path: Path) -> None:
    ring.save(tmp_path)
    (key_file,) = tmp_path.glob("*.key")
    os.chmod(key_file, 0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        KeyRing.load(tmp_path)


def test_keys_from_the_environment(ring: KeyRing) -> None:
    key = ring.signing_key("payment")
    assert key is not None
    seed, public = b64(key.private.private_bytes_raw()), b64(key.private.public_key().public_bytes_raw())
    signer = KeyRing.from_env({"CHOREOGRAPH_SIGNING_KEYS": f"payment:{key.id}:{seed}"})
    verifier = KeyRing.from_env({"CHOREOGRAPH_VERIFY_KEYS": f"payment:{key.id}:{public}"})
    Verifier(verifier).verify(sign(signer, [envelope()])[0])
    with pytest.raises(ConfigurationError) as refused:
        KeyRing.from_env({"CHOREOGRAPH_SIGNING_KEYS": f"payment:{key.id}:{seed[:-4]}"})
    assert seed[:20] not in str(refused.value)


def test_no_private_material_in_repr(ring: KeyRing) -> None:
    key = ring.signing_key("payment")
    assert key is not None
    assert b64(key.private.private_bytes_raw()) not in repr(key)
    assert "Ed25519" not in repr(key)


def test_signing_for_a_source_without_a_key_is_a_configuration_error(ring: KeyRing) -> None:
    with pytest.raises(ConfigurationError, match="keys generate inventory"):
        sign(ring, [envelope(source="inventory")])


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13, 17, 64])
def test_every_event_of_a_batch_of_any_size_verifies_alone_and_in_turn(ring: KeyRing, size: int) -> None:
    signed = [decode(encode(e)) for e in sign(ring, [envelope(n) for n in range(size)])]
    shared = Verifier(ring)
    for event in reversed(signed):  # a verifier that has seen the rest of the batch takes the shortcut
        assert Verifier(ring).verify(event).owner == shared.verify(event).owner == "payment"
    # and an altered event of a verified batch is still caught by the verifier that remembers the batch
    with pytest.raises(SignatureError):
        shared.verify(signed[-1].replace(data={"order_id": "x"}))


async def test_a_sealed_event_survives_binary_mode(ring: KeyRing) -> None:
    # Given an event signed and encrypted, sent in CloudEvents binary mode (attributes as headers)
    from choreograph.core.codec import from_binary, to_binary
    from choreograph.security import Encryption, MemoryKeyStore, Security

    security = Security(keys=ring, encryption=Encryption(MemoryKeyStore(), {"shop.payment.captured": ("lines",)}))
    for batch in ([envelope(1)], [envelope(1), envelope(2), envelope(3)]):
        for original, sealed in zip(batch, await security.seal(batch), strict=True):
            headers, body = to_binary(sealed)
            # Then it opens to the original on the other side
            opened = await security.open(from_binary(headers, body))
            assert opened.data == original.data
