"""``dlq edit`` of a signed, encrypted dead letter: sealed again with the operator's keys, or refused."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from choreograph.core import codec
from choreograph.ops.cli import cli
from choreograph.ops.session import opened_broker
from choreograph.security import KeyRing
from tests.conftest import wait_until
from tests.unit.security import dlq_app
from tests.unit.security.dlq_app import Charge, charge_app

runner = CliRunner()
APP = "tests.unit.security.dlq_app:cli_app"


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(cli, list(args))
    return result.exit_code, " ".join(result.output.split())


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A SQLite broker holding one dead letter: a signed Charge with an encrypted card, rejected; editing on."""
    for name in ("CHOREOGRAPH_BROKER", "CHOREOGRAPH_KEYS_DIR", "CHOREOGRAPH_SIGNING_KEYS", "CHOREOGRAPH_VERIFY_KEYS"):
        monkeypatch.delenv(name, raising=False)
    url = f"sqlite:///{tmp_path / 'dlq.db'}"
    app = charge_app(url)

    async def reject_one() -> None:
        await app.start()
        await app.publish(Charge(kind="bad", card="4111111111111111"), key="c-1")
        await wait_until(lambda: app.stats()["orders.charge"].dead_letters == 1, 30, "the dead letter")
        await app.close()

    asyncio.run(reject_one())
    assert invoke("dlq", "settings", "--editing", "on", "--broker", url)[0] == 0
    return url


def letter_id(url: str, reason: str = "reject") -> str:
    result = runner.invoke(cli, ["dlq", "list", "--json", "-b", url])
    assert result.exit_code == 0, result.output
    [doc] = [d for d in map(json.loads, result.stdout.splitlines()) if d["reason"] == reason]
    return str(doc["id"])


def handle_again(url: str) -> None:
    """Run the App until it handled or dead-lettered one more event."""
    dlq_app.handled.clear()
    app = charge_app(url)

    async def run() -> None:
        await app.start()
        await wait_until(
            lambda: bool(dlq_app.handled) or app.stats()["orders.charge"].dead_letters > 0, 30, "one more event"
        )
        await app.close()

    asyncio.run(run())


def keys_dir(tmp_path: Path, service: str) -> Path:
    """A key directory holding ``service``'s key from the shop's ring (the operator's copy)."""
    key = dlq_app.ring.signing_key(service)
    assert key is not None
    directory = tmp_path / "keys"
    KeyRing([key]).save(directory)
    return directory


def test_an_edited_copy_is_decrypted_for_editing_then_encrypted_and_signed_and_handled(
    url: str, tmp_path: Path
) -> None:
    # Given the operator holds the shop's signing key (the App's source) and the App's key store
    keys = keys_dir(tmp_path, "secdlq")
    # When they edit the rejected charge's kind, its card being encrypted
    code, output = invoke(
        "dlq", "edit", letter_id(url), "--set", "kind=ok", "--app", APP, "--keys", str(keys), "-y", "-b", url
    )
    # Then only kind changed (the card was decrypted, so it is not a change), and the copy was sent
    assert code == 0 and "changed: kind" in output and "marked edited" in output, output

    # And the stored copy is signed by secdlq and its card encrypted
    async def stored() -> list[bytes]:
        async with opened_broker(url) as broker:
            return [d.value for d in await broker.read(Charge.topic(), limit=10)]  # type: ignore[attr-defined]

    copy = codec.decode(asyncio.run(stored())[-1])
    assert copy.extensions["signaturekey"].startswith("secdlq.") and copy.data["card"] == "<encrypted>"
    assert b"4111111111111111" not in asyncio.run(stored())[-1]
    # And the consumer verifies, decrypts and handles it with the edited kind and the original card
    handle_again(url)
    assert dlq_app.handled == [("ok", "4111111111111111", "secdlq")]


def test_editing_a_signed_dead_letter_without_a_key_is_refused_naming_the_fix(url: str) -> None:
    # When the operator edits with no key at all, Then it is refused: consumers would dead-letter the copy
    code, output = invoke("dlq", "edit", letter_id(url), "--set", "kind=ok", "-y", "-b", url)
    assert code == 2 and "holds a signed event" in output and "signing key for 'secdlq'" in output, output
    # And as a source whose key nobody holds, the App signing, it is refused too
    code, output = invoke(
        "dlq", "edit", letter_id(url), "--set", "kind=ok", "--app", APP, "--source", "nobody", "-y", "-b", url
    )
    assert code == 2 and "no signing key for source 'nobody'" in output, output
    # And nothing was sent: the entry is still open
    code, output = invoke("dlq", "list", "--json", "-b", url)
    assert '"status": "open"' in output or '"status":"open"' in output, output


def test_editing_an_encrypted_dead_letter_without_the_key_store_is_refused(url: str, tmp_path: Path) -> None:
    code, output = invoke(
        "dlq", "edit", letter_id(url), "--set", "kind=ok", "--keys", str(keys_dir(tmp_path, "secdlq")), "-y", "-b", url
    )
    assert code == 2 and "encrypted payload" in output and "--app" in output and "nothing was sent" in output


def test_a_forgery_dead_lettered_by_the_signature_check_is_not_re_signed(url: str, tmp_path: Path) -> None:
    # Given an unsigned Charge written straight to the log (a forgery), dead-lettered with reason signature
    code, output = invoke(
        "publish", Charge.event_type(), '{"kind": "ok", "card": "1"}', "--source", "secdlq", "-b", url
    )
    assert code == 0, output
    handle_again(url)
    forged = letter_id(url, "signature")
    # When an operator edits it holding the source's key, Then signing it is refused: nobody verified it
    code, output = invoke(
        "dlq",
        "edit",
        forged,
        "--set",
        "kind=fine",
        "--app",
        APP,
        "--keys",
        str(keys_dir(tmp_path, "secdlq")),
        "-y",
        "-b",
        url,
    )
    assert code == 2 and "refused by the signature check" in output and "nothing was sent" in output, output
