"""What the CLI writes into the log itself is sealed: ``choreograph publish`` signs with the operator's key."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from choreograph.core import codec
from choreograph.core.envelope import Envelope
from choreograph.ops.cli import cli
from choreograph.ops.session import opened_broker
from choreograph.security import KeyRing, Security, SignatureError
from tests.unit.security import signed_app

runner = CliRunner()
RESERVED = {"order_id": "o-1", "total_cents": 500}


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    for name in ("CHOREOGRAPH_BROKER", "CHOREOGRAPH_KEYS_DIR", "CHOREOGRAPH_SIGNING_KEYS", "CHOREOGRAPH_VERIFY_KEYS"):
        monkeypatch.delenv(name, raising=False)
    return f"sqlite:///{tmp_path}/log.db"


def keys_dir(tmp_path: Path, *services: str) -> Path:
    directory = tmp_path / "keys"
    for service in services:
        result = runner.invoke(cli, ["keys", "generate", service, "--dir", str(directory)])
        assert result.exit_code == 0, result.output
    return directory


def stored(url: str, topic: str) -> list[Envelope]:
    async def read() -> list[Envelope]:
        async with opened_broker(url) as broker:
            return [codec.decode(d.value) for d in await broker.read(topic, limit=10)]  # type: ignore[attr-defined]

    return asyncio.run(read())


def publish(url: str, *extra: str) -> tuple[int, str]:
    result = runner.invoke(
        cli, ["publish", "shop.inventory.reserved", json.dumps(RESERVED), "--broker", url, "--key", "o-1", *extra]
    )
    return result.exit_code, result.output


def test_publish_with_a_key_directory_signs_with_the_sources_key(url: str, tmp_path: Path) -> None:
    # Given a key directory holding the inventory service's key
    keys = keys_dir(tmp_path, "inventory")
    # When an operator publishes as inventory with --keys
    code, output = publish(url, "--source", "inventory", "--keys", str(keys))
    # Then the stored event is signed and verifies with the shop's ring; an edited copy does not
    assert code == 0, output
    [envelope] = stored(url, "shop.inventory.reserved")
    assert envelope.extensions.get("signaturekey", "").startswith("inventory.")
    security = Security(keys=KeyRing.load(keys))
    assert asyncio.run(security.open(envelope)).data == RESERVED
    tampered = envelope.replace(data={**RESERVED, "total_cents": 1})
    with pytest.raises(SignatureError):
        asyncio.run(security.open(tampered))


def test_publish_with_keys_in_the_environment_signs(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the key directory named by $CHOREOGRAPH_KEYS_DIR (as `choreograph keys` reads it)
    monkeypatch.setenv("CHOREOGRAPH_KEYS_DIR", str(keys_dir(tmp_path, "inventory")))
    # When an operator publishes as inventory without --keys
    code, output = publish(url, "--source", "inventory")
    # Then the event is signed
    assert code == 0, output
    assert stored(url, "shop.inventory.reserved")[0].extensions.get("signature")


def test_publish_with_keys_but_none_for_the_source_is_refused_and_writes_nothing(url: str, tmp_path: Path) -> None:
    # Given keys for payment only
    keys = keys_dir(tmp_path, "payment")
    # When an operator publishes as inventory with them
    code, output = publish(url, "--source", "inventory", "--keys", str(keys))
    # Then the command fails naming the source and the fix, and nothing was written
    assert code == 2
    flat = " ".join(output.split())
    assert "no signing key for source 'inventory'" in flat and "keys generate inventory" in flat
    assert stored(url, "shop.inventory.reserved") == []


def test_publish_for_an_app_that_signs_needs_a_key_and_uses_the_apps_ring(url: str) -> None:
    # Given an App that signs its events (its consumers require signatures)
    app = "tests.unit.security.signed_app:app"
    # When an operator publishes for it under the default source, which has no key
    code, output = publish(url, "--app", app)
    # Then it is refused: consumers would dead-letter it
    assert code == 2 and "must be signed" in " ".join(output.split())
    # And as a service the App's key ring signs for, the event is signed with that key and verifies
    code, output = publish(url, "--app", app, "--source", "inventory")
    assert code == 0, output
    [envelope] = stored(url, "shop.inventory.reserved")
    assert asyncio.run(Security(keys=signed_app.ring).open(envelope)).source == "inventory"


def test_publish_without_any_keys_stays_unsigned(url: str) -> None:
    code, output = publish(url, "--source", "inventory")
    assert code == 0, output
    assert "signature" not in stored(url, "shop.inventory.reserved")[0].extensions
