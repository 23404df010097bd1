"""Encrypted payloads end to end: per-field and whole, per-subject keys, crypto-shredding, rotation, failures."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import pytest

from choreograph import App, Context, Event, Reject
from choreograph.brokers.memory import MemoryBroker
from choreograph.core.broker import Delivery
from choreograph.core.clock import FakeClock
from choreograph.core.codec import decode
from choreograph.ops.log_cli import _line
from choreograph.security import (
    ENCRYPTED,
    Encryption,
    FileKeyStore,
    KeyRing,
    MemoryKeyStore,
    Security,
    Sensitive,
    new_key,
)
from choreograph.testing import TestApp
from tests.unit.security.conftest import FAST


class CardCharged(Event, type="sec.card.charged"):
    order_id: str
    card: Annotated[str, Sensitive()]
    amount_cents: int


class AddressChanged(Event, type="sec.address.changed"):
    street: str
    city: str


class Noted(Event, type="sec.noted"):
    order_id: str


def build(
    store: object, *, ring: KeyRing | None = None, reject: bool = False, broker: MemoryBroker | None = None
) -> tuple[App, list[object]]:
    seen: list[object] = []
    encryption = Encryption.of(store, [CardCharged, AddressChanged])  # type: ignore[arg-type]
    app = App(
        "shop",
        broker=broker or MemoryBroker(clock=FakeClock()),
        consumer=FAST,
        security=Security(keys=ring, encryption=encryption),
    )

    @app.service("billing").on(CardCharged)
    async def record(event: CardCharged, ctx: Context) -> AddressChanged:
        if reject:
            raise Reject("refused for the test")
        seen.append((event.order_id, event.card))
        return AddressChanged(street=f"1 {event.card[-4:]} st", city="Lyon")

    @app.service("mail").on(AddressChanged)
    async def mail(event: AddressChanged, ctx: Context) -> None:
        seen.append((event.street, event.city))

    return app, seen


async def raw(app: App, topic: str) -> list[bytes]:
    return [r.value for r in await app.broker.read(topic, limit=100)]  # type: ignore[attr-defined]


async def test_sensitive_fields_and_whole_payloads_are_encrypted_on_the_wire_and_clear_to_handlers() -> None:
    # Given an app encrypting CardCharged.card and all of AddressChanged, signing too
    ring = KeyRing([new_key("shop"), new_key("billing"), new_key("mail")])
    app, seen = build(MemoryKeyStore(), ring=ring)
    async with TestApp(app) as t:
        # When a card is charged for customer c-1
        await t.publish(CardCharged(order_id="o-1", card="4111111111111111", amount_cents=500), key="c-1")
        await t.drain()
        charged, changed = await raw(app, CardCharged.topic()), await raw(app, AddressChanged.topic())
    # Then handlers saw clear values
    assert seen == [("o-1", "4111111111111111"), ("1 1111 st", "Lyon")]
    # And on the wire the card and the whole address read <encrypted>; the rest stays readable
    for value in charged + changed:
        assert b"4111111111111111" not in value and b"Lyon" not in value
    assert decode(charged[0]).data == {"order_id": "o-1", "card": ENCRYPTED, "amount_cents": 500}
    assert decode(changed[0]).data == ENCRYPTED
    # And the CLI's log line shows <encrypted>
    line = _line(Delivery(topic=CardCharged.topic(), partition=0, offset=0, value=charged[0])).plain
    assert ENCRYPTED in line and "4111" not in line


async def test_dead_letters_keep_the_payload_encrypted() -> None:
    app, _ = build(MemoryKeyStore(), reject=True)
    async with TestApp(app, raise_on_dead_letter=False) as t:
        await t.publish(CardCharged(order_id="o-1", card="4111111111111111", amount_cents=500), key="c-1")
        await t.drain()
        letters = t.dead_letters
    assert len(letters) == 1
    assert b"4111111111111111" not in letters[0].value and b'"card":"<encrypted>"' in letters[0].value


async def test_forgetting_a_subjects_key_makes_its_events_unreadable_and_leaves_others_readable(tmp_path: Path) -> None:
    # Given events of two customers written with a file key store
    store = FileKeyStore(tmp_path / "keys", master=b"m" * 32)
    writer, _ = build(store)
    await writer.publish(CardCharged(order_id="a", card="4000000000000001", amount_cents=1), key="c-a")
    await writer.publish(CardCharged(order_id="b", card="4000000000000002", amount_cents=2), key="c-b")
    broker = writer.broker
    # When customer c-a's key is forgotten (crypto-shredding)
    assert await store.forget("c-a")
    # Then a consumer with a fresh store handle on the same keys reads c-b's event and dead-letters c-a's
    reader, seen = build(FileKeyStore(tmp_path / "keys", master=b"m" * 32), broker=broker)  # type: ignore[arg-type]
    async with TestApp(reader, services=["billing"], raise_on_dead_letter=False) as t:
        await t.drain()
        letters = t.dead_letters
    assert seen[0] == ("b", "4000000000000002") and ("a", "4000000000000001") not in seen
    assert [(d.reason, d.error_type) for d in letters] == [("decrypt", "DecryptError")]
    assert b"4000000000000001" not in letters[0].value


async def test_rotation_keeps_older_events_readable() -> None:
    store = MemoryKeyStore()
    app, seen = build(store)
    await app.publish(CardCharged(order_id="old", card="4000000000000001", amount_cents=1), key="c-1")
    await store.rotate("c-1")
    await app.publish(CardCharged(order_id="new", card="4000000000000002", amount_cents=2), key="c-1")
    versions = [decode(v).extensions["enckey"] for v in await raw(app, CardCharged.topic())]
    async with TestApp(app, services=["billing"]) as t:
        await t.drain()
    assert sorted(versions) == ["v1", "v2"]
    assert sorted(s for s in seen if s[0] in ("old", "new")) == [
        ("new", "4000000000000002"),
        ("old", "4000000000000001"),
    ]


async def test_an_unencrypted_event_of_an_encrypted_type_is_refused() -> None:
    app, seen = build(MemoryKeyStore())
    plain = App("shop", broker=app.broker)  # a producer without encryption
    await plain.publish(CardCharged(order_id="o", card="4000000000000009", amount_cents=1), key="c-1")
    async with TestApp(app, services=["billing"], raise_on_dead_letter=False) as t:
        await t.drain()
        letters = t.dead_letters
    assert seen == [] and [d.reason for d in letters] == ["decrypt"]


async def test_a_ciphertext_moved_into_another_event_does_not_decrypt() -> None:
    store = MemoryKeyStore()
    encryption = Encryption.of(store, [CardCharged])
    from choreograph.core.envelope import Envelope

    sealed = await encryption.encrypt(
        Envelope(
            id="e-1",
            source="shop",
            type=CardCharged.event_type(),
            data={"order_id": "o", "card": "4", "amount_cents": 1},
            partitionkey="c-1",
        )
    )
    from choreograph.security import DecryptError

    with pytest.raises(DecryptError, match="does not decrypt"):
        await encryption.decrypt(sealed.replace(id="e-2"))
    assert (await encryption.decrypt(sealed)).data["card"] == "4"


def test_the_file_store_keeps_no_subject_name_and_no_clear_key(tmp_path: Path) -> None:
    import asyncio

    store = FileKeyStore(tmp_path, master=b"k" * 32)
    key = asyncio.run(store.current("alice@example.com"))
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and "alice" not in files[0].name
    content = files[0].read_bytes()
    assert key.key not in content and b"alice" not in content
    assert files[0].stat().st_mode & 0o077 == 0
    assert orjson.loads(content)["current"] == 1


async def test_the_kv_key_store_shares_keys_and_forgets_them_for_every_process() -> None:
    # Given two processes' key stores over one key-value namespace (the broker's, in production)
    from choreograph.core.kv import MemoryKeyValue
    from choreograph.security import DecryptError, KvKeyStore

    kv = MemoryKeyValue("data_keys")
    first, second = KvKeyStore(kv, b"m" * 32, cache_ttl=0.0), KvKeyStore(kv, b"m" * 32, cache_ttl=0.0)
    writer, reader = Encryption.of(first, [CardCharged]), Encryption.of(second, [CardCharged])
    from choreograph.core.envelope import Envelope

    def event(n: int) -> Envelope:
        data = {"order_id": str(n), "card": "4111", "amount_cents": n}
        return Envelope(id=f"e-{n}", source="shop", type=CardCharged.event_type(), data=data, partitionkey="c-1")

    sealed = await writer.encrypt(event(1))
    # Then the other process reads it, and once the key is forgotten nobody does
    assert (await reader.decrypt(sealed)).data["card"] == "4111"
    assert await second.forget("c-1")
    with pytest.raises(DecryptError, match="no data key"):
        await writer.decrypt(sealed)
    # And a wrong master key cannot unwrap the stored keys
    await first.current("c-2")
    with pytest.raises(DecryptError, match="wrong master key"):
        await KvKeyStore(kv, b"x" * 32).current("c-2")


async def test_the_sqlite_files_hold_only_ciphertext(tmp_path: Path) -> None:
    # Given an app on the SQLite log encrypting card numbers
    encryption = Encryption.of(MemoryKeyStore(), [CardCharged])
    app = App("shop", broker=f"sqlite:///{tmp_path}/log.db", security=Security(encryption=encryption))
    # When a charge is published and the app closed
    await app.publish(CardCharged(order_id="o-1", card="4929000000006", amount_cents=5), key="c-9")
    await app.close()
    # Then no file of the database (log, WAL) holds the card number; the payload reads <encrypted>
    stored = b"".join(path.read_bytes() for path in tmp_path.iterdir() if path.is_file())
    assert b"4929000000006" not in stored
    assert b'"card":"<encrypted>"' in stored


def test_master_keys_from_a_raw_file_base64_text_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from choreograph.core.errors import ConfigurationError
    from choreograph.security.keystore import master_key, new_master_key

    raw = b"\n" + b"k" * 29 + b" \n"  # 32 raw bytes with whitespace at both ends: kept as they are
    (tmp_path / "raw").write_bytes(raw)
    assert master_key(path=tmp_path / "raw") == raw
    text = new_master_key()
    (tmp_path / "text").write_text(text + "\n")
    assert len(master_key(path=tmp_path / "text")) == 32
    monkeypatch.setenv("CHOREOGRAPH_MASTER_KEY", text)
    assert master_key() == master_key(path=tmp_path / "text")
    monkeypatch.setenv("CHOREOGRAPH_MASTER_KEY", "too-short-secret")
    with pytest.raises(ConfigurationError) as refused:
        master_key()
    assert "too-short-secret" not in str(refused.value)


async def test_data_keys_in_the_brokers_key_value_store_are_shared_by_every_process(tmp_path: Path) -> None:
    # Given two broker handles on one SQLite log (two processes), each with a key store in the broker
    from choreograph.brokers import open_broker
    from choreograph.core.envelope import Envelope
    from choreograph.security import DecryptError, KvKeyStore

    url = f"sqlite:///{tmp_path}/log.db"
    first, second = open_broker(url), open_broker(url)
    try:
        writer = Encryption.of(KvKeyStore.for_broker(first, b"m" * 32, cache_ttl=0.0), [CardCharged])
        reader = Encryption.of(KvKeyStore.for_broker(second, b"m" * 32, cache_ttl=0.0), [CardCharged])
        data = {"order_id": "o", "card": "4111", "amount_cents": 1}
        sealed = await writer.encrypt(
            Envelope(id="e-1", source="shop", type=CardCharged.event_type(), data=data, partitionkey="c-1")
        )
        # Then the other process decrypts with the shared key, and after one forgets it neither can
        assert (await reader.decrypt(sealed)).data == data
        assert await reader.store.forget("c-1")
        with pytest.raises(DecryptError):
            await writer.decrypt(sealed)
    finally:
        await first.close()
        await second.close()


def test_a_broker_without_key_value_store_is_named() -> None:
    from choreograph.core.errors import ConfigurationError
    from choreograph.security import KvKeyStore

    with pytest.raises(ConfigurationError, match="keeps no key-value store"):
        KvKeyStore.for_broker(object(), b"m" * 32)
