"""Fuzzing of the verification and decryption paths: whatever the bytes and attributes, only SecurityError.

``Security.open`` is what the consumer calls on every decoded event; it must
end in the event (opened) or a SecurityError subclass (a dead letter with a
reason), never another exception.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from choreograph.core.codec import decode, encode
from choreograph.core.envelope import Envelope
from choreograph.core.errors import DecodeError
from choreograph.security import (
    AccessPolicy,
    Encryption,
    KeyRing,
    MemoryKeyStore,
    Security,
    SecurityError,
    new_key,
)
from choreograph.security.canonical import SIGNATURE, SIGNATURE_KEY, SIGNATURE_PROOF
from choreograph.security.encryption import ENCRYPTED_DATA, ENCRYPTION_KEY

RING = KeyRing([new_key("payment")])
KEY_ID = RING.signing_key("payment").id  # type: ignore[union-attr]
STORE = MemoryKeyStore()
SECURITY = Security(
    keys=RING,
    policy=AccessPolicy.of(payment=(["t.*"], [])),
    encryption=Encryption(STORE, {"t.whole": None, "t.fields": ("card",)}),
)
LOOP = asyncio.new_event_loop()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
text_or_junk = st.one_of(st.text(max_size=120), st.from_regex(r"[A-Za-z0-9_\-]{0,200}", fullmatch=True), json_values)


def opened(envelope: Envelope) -> Envelope | SecurityError:
    try:
        return LOOP.run_until_complete(SECURITY.open(envelope))
    except SecurityError as exc:
        return exc


def genuine(data: Any, etype: str) -> Envelope:
    env = Envelope(id="0190f5c4-0000-7000-8000-000000000001", source="payment", type=etype, data=data, partitionkey="c")
    return LOOP.run_until_complete(SECURITY.seal([env]))[0]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.binary(max_size=600))
def test_arbitrary_bytes_decode_or_fail_then_open_or_fail_cleanly(raw: bytes) -> None:
    try:
        envelope = decode(raw)
    except DecodeError:
        return
    opened(envelope)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    etype=st.sampled_from(["t.whole", "t.fields", "t.other"]),
    data=json_values,
    name=st.sampled_from([SIGNATURE, SIGNATURE_KEY, SIGNATURE_PROOF, ENCRYPTED_DATA, ENCRYPTION_KEY, "x", "data"]),
    value=text_or_junk,
)
def test_any_attribute_replaced_by_anything_opens_or_raises_only_security_errors(
    etype: str, data: Any, name: str, value: Any
) -> None:
    # Given a genuine sealed event (encrypted where its type says, signed)
    env = genuine({"card": data, "n": 1} if etype == "t.fields" else data, etype)
    # When one attribute is replaced with anything, after a trip over the wire
    changed = env.replace(data=value) if name == "data" else env.replace(extensions={**env.extensions, name: value})
    try:
        changed = decode(encode(changed))
    except (DecodeError, Exception):  # not encodable at all: nothing a broker would carry
        return
    result = opened(changed)
    # Then it opens only if nothing changed, else it is a SecurityError
    if isinstance(result, Envelope):
        assert changed.extensions.get(name) == env.extensions.get(name)


@settings(max_examples=200, deadline=None)
@given(data=json_values, etype=st.sampled_from(["t.whole", "t.fields", "t.other"]))
def test_genuine_events_always_open_to_what_was_sealed(data: Any, etype: str) -> None:
    payload = {"card": data, "n": 1} if etype == "t.fields" else data
    env = genuine(payload, etype)
    result = opened(decode(encode(env)))
    assert isinstance(result, Envelope), result
    assert result.data == decode(encode(Envelope(id="i", source="s", type="t", data=payload))).data


@settings(max_examples=200, deadline=None)
@given(signing=st.text(max_size=120), verify=st.text(max_size=120))
def test_key_variables_load_or_raise_only_configuration_errors(signing: str, verify: str) -> None:
    from choreograph.core.errors import ConfigurationError

    with contextlib.suppress(ConfigurationError):
        KeyRing.from_env({"CHOREOGRAPH_SIGNING_KEYS": signing, "CHOREOGRAPH_VERIFY_KEYS": verify})
