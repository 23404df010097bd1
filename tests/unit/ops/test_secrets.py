"""A password planted in a broker URL never appears in any output of the CLI or of a backend.

Failed connections need no server (a closed port); ``run`` and ``demo`` start
and stop against real NATS and Redis servers that require the password.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from typer.testing import CliRunner

from choreograph.brokers import open_broker
from choreograph.core.errors import ChoreographError
from choreograph.ops.cli import cli
from tests.brokers.processes import free_port, skip_or_fail, stop_process, wait_ready

PASSWORD = "S3cr3t-p@ss/w:rd%?&#"
ENCODED = quote(PASSWORD, safe="")
FORMS = (PASSWORD, ENCODED, "S3cr3t")
APP = "choreograph.examples.shop.app:app"
runner = CliRunner()


def _assert_hidden(text: str) -> None:
    for form in FORMS:
        assert form not in text, f"{form!r} shown in:\n{text}"


def _closed_port_urls(tmp_path: Path) -> list[str]:
    port = free_port()  # nothing listens there
    return [
        f"redis://app:{ENCODED}@127.0.0.1:{port}/0?connect_timeout=1",
        f"redis://:{ENCODED}@127.0.0.1:{port}/0?connect_timeout=1",
        f"nats://app:{ENCODED}@127.0.0.1:{port}?connect_timeout=1",
        f"nats://{ENCODED}@127.0.0.1:{port}?connect_timeout=1",
        f"kafka://app:{ENCODED}@127.0.0.1:{port}",
        f"sqlite:///{tmp_path}/missing/dir/x.db?password={ENCODED}",
        f"redis://app:{ENCODED}@127.0.0.1:{port}/not-a-number",
        f"nats://app:{ENCODED}@127.0.0.1:{port}/a-path",
        f"kafkaa://app:{ENCODED}@127.0.0.1:{port}",
    ]


@pytest.mark.parametrize("index", range(9))
def test_a_failed_connection_does_not_show_the_password(tmp_path: Path, index: int) -> None:
    # Given a URL with a password, pointing at a closed port (or malformed)
    url = _closed_port_urls(tmp_path)[index]
    if url.startswith("kafka://"):
        pytest.importorskip("aiokafka")

    # When a program opens and pings it, then the error it gets does not hold the password
    async def connect() -> str:
        try:
            broker = open_broker(url)
        except ChoreographError as exc:
            return f"{exc} {exc!r}"
        try:
            await broker.ping()
        except ChoreographError as exc:
            return f"{exc} {exc!r} {exc.__cause__!r}"
        finally:
            await broker.close()
        raise AssertionError(f"{url} answered")

    _assert_hidden(asyncio.run(connect()))

    # And neither does any command of the CLI given that URL
    for command in (["topics"], ["lag"], ["tail", "t.x"], ["dlq", "list"], ["run", APP]):
        result = runner.invoke(cli, [*command, "--broker", url])
        assert result.exit_code in (2, 3), result.output
        assert "error" in result.output
        _assert_hidden(result.output)


def test_the_url_from_the_environment_is_hidden_too(tmp_path: Path) -> None:
    url = f"redis://app:{ENCODED}@127.0.0.1:{free_port()}/0?connect_timeout=1"
    result = runner.invoke(cli, ["topics"], env={"CHOREOGRAPH_BROKER": url})
    assert result.exit_code == 3, result.output
    _assert_hidden(result.output)
    result = runner.invoke(cli, ["topics", "--help"], env={"CHOREOGRAPH_BROKER": url})
    _assert_hidden(result.output)


# --- real servers that require the password -------------------------------------------------


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from tests.brokers.nats.server import NatsServer, nats_server_binary

    try:
        binary = nats_server_binary()
    except Exception as exc:  # the helper skips or fails by itself when asked to require brokers
        skip_or_fail(f"no nats-server: {exc}")
        raise
    server = NatsServer(binary, tmp_path_factory.mktemp("nats-auth"), "auth", users={"app": PASSWORD})
    server.start()
    try:
        server.wait_healthy()
        yield f"nats://app:{ENCODED}@127.0.0.1:{server.port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from tests.brokers.redis.server import find_redis_server

    binary = find_redis_server()
    if binary is None:
        skip_or_fail("no redis-server binary")
    assert binary is not None
    directory = tmp_path_factory.mktemp("redis-auth")
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--save", "",
            "--appendonly", "no", "--requirepass", PASSWORD, "--logfile", str(directory / "redis.log")]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def ready() -> bool:
        import redis

        return bool(redis.Redis(port=port, password=PASSWORD, socket_timeout=0.5).ping())

    try:
        wait_ready(proc, ready, "redis-server", directory / "redis.log", 15.0)
        yield f"redis://default:{ENCODED}@127.0.0.1:{port}/0"
    finally:
        stop_process(proc)


def _run_until_banner(url: str) -> str:
    """Start ``choreograph run`` on ``url``, wait for its banner, stop it with SIGTERM; return all it wrote."""
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "choreograph", "run", APP, "--log-level", "DEBUG", "--metrics-port", "0"],
        env={**env, "CHOREOGRAPH_BROKER": url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    banner = proc.stdout.readline().decode()  # blocks until the worker is up (or exits)
    proc.send_signal(signal.SIGTERM)
    rest, errors = proc.communicate(timeout=60)
    assert "running" in banner, banner + errors.decode()
    assert "127.0.0.1:" in banner  # the metrics server listens on loopback by default
    return banner + rest.decode() + errors.decode()


@pytest.mark.parametrize("backend", ["nats", "redis"])
def test_run_start_and_stop_never_show_the_password(backend: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(f"{backend}_url")
    output = _run_until_banner(url)
    _assert_hidden(output)
    assert ":***@" in output  # the URL is shown, redacted


@pytest.mark.parametrize("backend", ["nats", "redis"])
def test_topics_on_a_protected_server_never_show_the_password(backend: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(f"{backend}_url")
    result = runner.invoke(cli, ["topics", "--broker", url])
    assert result.exit_code == 0, result.output
    _assert_hidden(result.output)


def _cmdlines_of_children(parent: int) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            ppid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
            if ppid == parent:
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except (OSError, StopIteration, ValueError):
            continue
    return found


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads worker command lines from /proc")
def test_demo_never_shows_the_password_nor_puts_it_on_worker_command_lines(nats_url: str) -> None:
    # Given the demo on a NATS server that requires a password
    proc = subprocess.Popen(
        [sys.executable, "-m", "choreograph", "demo", "--orders", "20", "--workers", "1", "--broker", nats_url,
         "--timeout", "120"],
        env={**os.environ, "NO_COLOR": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip

    # When its workers run, their command lines (what ps shows) are observed
    worker_lines: list[str] = []
    deadline = time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline:
        worker_lines += [line for line in _cmdlines_of_children(proc.pid) if " run " in line]
        time.sleep(0.05)  # sampling /proc, not waiting for an event
    out, err = proc.communicate(timeout=60)

    # Then the demo succeeded, no worker command line held the URL, and no output showed the password
    assert proc.returncode == 0, out.decode() + err.decode()
    assert worker_lines, "no worker process was seen"
    for line in worker_lines:
        _assert_hidden(line)
        assert "nats://" not in line
    _assert_hidden(out.decode() + err.decode())


def test_the_apps_own_url_is_hidden_in_run_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an App configured in code with a password URL, its server down
    url = f"redis://app:{ENCODED}@127.0.0.1:{free_port()}/0?connect_timeout=1"
    (tmp_path / "secret_app_module.py").write_text(f"from choreograph import App\napp = App('s', broker={url!r})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("CHOREOGRAPH_BROKER", raising=False)

    # When it is run, then the error names the broker without its password
    result = runner.invoke(cli, ["run", "secret_app_module:app"])
    assert result.exit_code == 3, result.output
    _assert_hidden(result.output)


@pytest.mark.parametrize("backend", ["nats", "redis"])
def test_a_refused_password_is_not_shown_either(backend: str, request: pytest.FixtureRequest) -> None:
    # Given the right server and the wrong password (which may well be another real one)
    url = request.getfixturevalue(f"{backend}_url").replace(ENCODED, quote("S3cr3t-wrong", safe=""))
    if backend == "nats":
        url += "?connect_timeout=1"

    # When a command connects, then it fails without showing the password it tried
    result = runner.invoke(cli, ["topics", "--broker", url])
    # 2, bad input: a refused password is a ConfigurationError naming the cause (it was 3, "unreachable")
    assert result.exit_code == 2, result.output
    assert "refused the credentials" in result.output
    assert "S3cr3t" not in result.output

    async def ping() -> str:
        broker = open_broker(url)
        try:
            await broker.ping()
        except ChoreographError as exc:
            return f"{exc} {exc!r} {exc.__cause__!r}"
        finally:
            await broker.close()
        raise AssertionError("a wrong password was accepted")

    assert "S3cr3t" not in asyncio.run(ping())
