"""TLS and authentication against real nats-server processes.

Servers: one with mutual TLS (clients must show a certificate signed by the
test CA) and users authenticated by password or NKey; one with TLS (no client
certificates) and token authentication. Certificates come from
:mod:`tests.brokers.certs`. Each refusal must be a ConfigurationError naming
its cause, raised well within the connect timeout, without the secret in it.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from choreograph.brokers.nats import NatsBroker
from choreograph.brokers.nats.config import NatsConfig, parse_url
from choreograph.core.broker import Record
from choreograph.core.errors import BrokerUnavailable, ConfigurationError
from tests.brokers.certs import Certificates

from .jwts import OperatorSetup, operator_setup
from .server import NatsServer, nats_server_binary

PASSWORD = "pä$$ w/rd@:%"
TOKEN = "t0ken-with/odd=chars"
CONNECT_TIMEOUT = 2.0
FAST = 2 * CONNECT_TIMEOUT  # a refusal is reported once the server said so, not after retries


@pytest.fixture(scope="module")
def nkey_user() -> tuple[str, str]:
    """A fresh NKey user: (seed, public key)."""
    nkeys = pytest.importorskip("nkeys", reason="NKey authentication needs the nkeys package")
    import os

    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    return seed.decode(), nkeys.from_seed(seed).public_key.decode()


def _tls_block(certs: Certificates, *, verify: bool, handshake_first: bool = False) -> str:
    return (
        f'tls {{ cert_file: "{certs.server_cert}", key_file: "{certs.server_key}", '
        f'ca_file: "{certs.ca}", verify: {"true" if verify else "false"}, timeout: 2'
        f"{', handshake_first: true' if handshake_first else ''} }}"
    )


@pytest.fixture(scope="module")
def mtls_server(
    tmp_path_factory: pytest.TempPathFactory, certificates: Certificates, nkey_user: tuple[str, str]
) -> Iterator[NatsServer]:
    """Mutual TLS; users: ``alice`` with PASSWORD, and the NKey user."""
    users = f'{{user: alice, password: "{PASSWORD}"}}, {{nkey: {nkey_user[1]}}}'
    server = NatsServer(
        nats_server_binary(),
        tmp_path_factory.mktemp("nats-mtls"),
        "mtls",
        extra_config=[_tls_block(certificates, verify=True), f"authorization {{ users: [{users}] }}"],
    )
    server.start()
    try:
        server.wait_healthy()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory, certificates: Certificates) -> Iterator[NatsServer]:
    """TLS without client certificates; token authentication."""
    server = NatsServer(
        nats_server_binary(),
        tmp_path_factory.mktemp("nats-token"),
        "token",
        extra_config=[_tls_block(certificates, verify=False), f'authorization {{ token: "{TOKEN}" }}'],
    )
    server.start()
    try:
        server.wait_healthy()
        yield server
    finally:
        server.stop()


def _mtls(server: NatsServer, certs: Certificates, **options: object) -> NatsConfig:
    base: dict[str, object] = {
        "servers": (server.url,),
        "connect_timeout": CONNECT_TIMEOUT,
        "tls_ca": str(certs.ca),
        "tls_cert": str(certs.client_cert),
        "tls_key": str(certs.client_key),
        "user": "alice",
        "password": PASSWORD,
    }
    base.update(options)
    return NatsConfig(**{k: v for k, v in base.items() if v is not None})  # type: ignore[arg-type]


async def _refusal(config: NatsConfig) -> tuple[str, float]:
    broker = NatsBroker(config)
    started = time.monotonic()
    try:
        with pytest.raises(ConfigurationError) as caught:
            await broker.ping()
    finally:
        await broker.close()
    return str(caught.value), time.monotonic() - started


async def test_mutual_tls_with_a_password_read_from_a_file_given_in_the_url(
    mtls_server: NatsServer, certificates: Certificates, tmp_path: Path
) -> None:
    secret = tmp_path / "nats-password"
    secret.write_text(PASSWORD + "\n")  # as a mounted secret often ends
    url = (
        f"{mtls_server.url}?user=alice&password_file={secret}&tls_ca={certificates.ca}"
        f"&tls_cert={certificates.client_cert}&tls_key={certificates.client_key}"
    )
    broker = NatsBroker.from_url(url)
    try:
        await broker.publish("secure.orders", [Record(b"over tls", key="k")])
        [delivery] = await broker.read("secure.orders")
        assert delivery.value == b"over tls"
    finally:
        await broker.close()


async def test_nkey_seed_from_the_environment(
    mtls_server: NatsServer, certificates: Certificates, nkey_user: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_NATS_SEED", nkey_user[0])
    broker = NatsBroker(_mtls(mtls_server, certificates, user=None, password=None, nkey_seed_env="TEST_NATS_SEED"))
    try:
        await broker.ping()
    finally:
        await broker.close()


async def test_an_unknown_nkey_is_refused(mtls_server: NatsServer, certificates: Certificates) -> None:
    nkeys = pytest.importorskip("nkeys")
    stranger = nkeys.encode_seed(bytes(32), nkeys.PREFIX_BYTE_USER).decode()
    message, elapsed = await _refusal(_mtls(mtls_server, certificates, user=None, password=None, nkey_seed=stranger))
    assert "refused the credentials (NKey)" in message
    assert stranger not in message
    assert elapsed < FAST


async def test_a_wrong_password_is_a_clear_and_fast_error(mtls_server: NatsServer, certificates: Certificates) -> None:
    message, elapsed = await _refusal(_mtls(mtls_server, certificates, password="not-the-password"))
    assert "refused the credentials (user 'alice' with a password)" in message
    assert "Authorization Violation" in message
    assert "not-the-password" not in message
    assert elapsed < FAST


async def test_an_untrusted_server_certificate_names_tls_ca(
    mtls_server: NatsServer, certificates: Certificates
) -> None:
    message, elapsed = await _refusal(_mtls(mtls_server, certificates, tls_ca=str(certificates.other_ca)))
    assert f"TLS handshake with {mtls_server.url} failed: the server's certificate is not trusted" in message
    assert "set tls_ca" in message
    assert elapsed < FAST


async def test_the_system_trust_store_does_not_trust_a_private_ca(
    mtls_server: NatsServer, certificates: Certificates
) -> None:
    message, _ = await _refusal(_mtls(mtls_server, certificates, tls_ca=None, tls=True))
    assert "certificate is not trusted" in message


async def test_a_missing_client_certificate_is_named(mtls_server: NatsServer, certificates: Certificates) -> None:
    message, elapsed = await _refusal(_mtls(mtls_server, certificates, tls_cert=None, tls_key=None))
    assert "the server requires a client certificate (mutual TLS); set tls_cert and tls_key" in message
    assert elapsed < FAST


async def test_a_client_certificate_from_another_ca_is_refused(
    mtls_server: NatsServer, certificates: Certificates
) -> None:
    message, elapsed = await _refusal(
        _mtls(mtls_server, certificates, tls_cert=str(certificates.rogue_cert), tls_key=str(certificates.rogue_key))
    )
    assert "the server refused our client certificate" in message
    assert elapsed < FAST


async def test_a_token_from_a_file_over_tls_with_a_server_name(
    token_server: NatsServer, certificates: Certificates, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN)
    config = parse_url(
        f"tls://127.0.0.1:{token_server.port}?token_file={token}&tls_ca={certificates.ca}&tls_server_name=localhost"
    )
    broker = NatsBroker(config)
    try:
        await broker.ping()
    finally:
        await broker.close()


async def test_a_wrong_token_is_refused(token_server: NatsServer, certificates: Certificates) -> None:
    config = NatsConfig(servers=(token_server.url,), token="wrong", tls_ca=str(certificates.ca))
    message, elapsed = await _refusal(config)
    assert "refused the credentials (token)" in message
    assert elapsed < FAST


async def test_a_server_name_not_in_the_certificate_is_refused(
    token_server: NatsServer, certificates: Certificates
) -> None:
    config = NatsConfig(
        servers=(token_server.url,), token=TOKEN, tls_ca=str(certificates.ca), tls_server_name="elsewhere.example"
    )
    message, _ = await _refusal(config)
    assert "certificate is not trusted" in message
    assert "set tls_server_name" in message


async def test_verify_none_encrypts_without_checking_the_server(
    token_server: NatsServer, certificates: Certificates
) -> None:
    config = NatsConfig(servers=(token_server.url,), token=TOKEN, tls_ca=str(certificates.other_ca), tls_verify="none")
    broker = NatsBroker(config)
    try:
        await broker.ping()
    finally:
        await broker.close()


async def test_a_client_requiring_tls_refuses_a_plain_server(nats_server: NatsServer) -> None:
    message, _ = await _refusal(NatsConfig(servers=(nats_server.url,), tls=True))
    assert "does not use TLS, but this client requires it" in message


async def test_a_plain_client_is_refused_by_a_tls_server(token_server: NatsServer) -> None:
    # nats-py upgrades when the server demands TLS; with the system's trust store the test CA is unknown
    message, _ = await _refusal(NatsConfig(servers=(token_server.url,), token=TOKEN))
    assert "certificate is not trusted" in message


@pytest.fixture(scope="module")
def operator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NatsServer, OperatorSetup]]:
    """A server in operator (JWT) mode: it trusts an operator and knows two accounts by their JWTs."""
    pytest.importorskip("nkeys", reason="JWT authentication needs the nkeys package")
    setup = operator_setup()
    server = NatsServer(nats_server_binary(), tmp_path_factory.mktemp("nats-jwt"), "jwt", extra_config=setup.config)
    server.start()
    try:
        server.wait_healthy()
        yield server, setup
    finally:
        server.stop()


async def test_a_credentials_file_authenticates_in_operator_mode(
    operator: tuple[NatsServer, OperatorSetup], tmp_path: Path
) -> None:
    server, setup = operator
    creds = tmp_path / "app.creds"
    creds.write_text(setup.creds)
    broker = NatsBroker.from_url(f"{server.url}?credentials_file={creds}")
    try:
        await broker.publish("jwt.orders", [Record(b"signed in", key="k")])
        assert [d.value for d in await broker.read("jwt.orders")] == [b"signed in"]
    finally:
        await broker.close()


async def test_a_user_of_an_unknown_account_is_refused(
    operator: tuple[NatsServer, OperatorSetup], tmp_path: Path
) -> None:
    server, setup = operator
    creds = tmp_path / "stranger.creds"
    creds.write_text(setup.stranger_creds)
    message, elapsed = await _refusal(NatsConfig(servers=(server.url,), credentials_file=str(creds)))
    assert f"refused the credentials (credentials_file {str(creds)!r})" in message
    assert elapsed < FAST


async def test_a_missing_credentials_file_is_named(operator: tuple[NatsServer, OperatorSetup], tmp_path: Path) -> None:
    server, _ = operator
    message, _ = await _refusal(NatsConfig(servers=(server.url,), credentials_file=str(tmp_path / "nope.creds")))
    assert "cannot read credentials_file" in message


@pytest.fixture(scope="module")
def handshake_first_server(
    tmp_path_factory: pytest.TempPathFactory, certificates: Certificates
) -> Iterator[NatsServer]:
    """TLS from the first byte (no greeting in the clear); no authentication."""
    server = NatsServer(
        nats_server_binary(),
        tmp_path_factory.mktemp("nats-first"),
        "first",
        extra_config=[_tls_block(certificates, verify=False, handshake_first=True)],
    )
    server.start()
    try:
        server.wait_healthy()
        yield server
    finally:
        server.stop()


async def test_tls_before_the_greeting(handshake_first_server: NatsServer, certificates: Certificates) -> None:
    config = parse_url(f"{handshake_first_server.url}?tls_handshake_first=true&tls_ca={certificates.ca}")
    broker = NatsBroker(config)
    try:
        await broker.ping()
    finally:
        await broker.close()


async def test_a_client_waiting_for_a_greeting_fails_fast_against_a_handshake_first_server(
    handshake_first_server: NatsServer, certificates: Certificates
) -> None:
    # the server says nothing until the client starts TLS: the bounded connect gives up, it does not hang
    broker = NatsBroker(
        NatsConfig(servers=(handshake_first_server.url,), tls_ca=str(certificates.ca), connect_timeout=1)
    )
    started = time.monotonic()
    try:
        with pytest.raises(BrokerUnavailable, match="needs tls_handshake_first=true"):
            await broker.ping()
    finally:
        await broker.close()
    assert time.monotonic() - started < 10


async def test_the_keepalive_thread_connects_with_the_same_tls_and_credentials(
    mtls_server: NatsServer, certificates: Certificates
) -> None:
    # the thread that renews leases has its own connection: it needs the client certificate and password too
    broker = NatsBroker(_mtls(mtls_server, certificates, lease_timeout=1.5))

    def connections() -> int:
        """Connections the server authenticated as alice (one still in its TLS handshake does not count)."""
        url = f"http://127.0.0.1:{mtls_server.monitor_port}/connz?auth=true"
        with urllib.request.urlopen(url, timeout=2) as reply:
            return sum(c.get("authorized_user") == "alice" for c in json.load(reply).get("connections") or ())

    try:
        subscription = await broker.subscribe("secure.leases", "billing")
        assert connections() == 1  # the broker's; the thread connects one heartbeat interval after the join
        deadline = time.monotonic() + 15
        while connections() < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert connections() == 2, "the keepalive thread did not connect"
        await subscription.close()
    finally:
        await broker.close()
