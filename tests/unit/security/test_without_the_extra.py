"""Without the ``security`` extra (no ``cryptography``), choreograph still imports and runs; only security asks for it.

Each check runs in a fresh interpreter in which ``import cryptography`` fails.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCK = "import sys\nsys.modules['cryptography'] = None  # as if the security extra were not installed\n"


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK + textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )


def test_an_app_without_security_runs_without_cryptography() -> None:
    result = run(
        """
        import asyncio
        from choreograph import App, Context, Event
        from choreograph.testing import TestApp  # the harness too

        class Pinged(Event, type="t.pinged", topic="t.pings"):
            n: int

        app = App("pinger", broker="memory://")
        seen = []

        @app.service("pong").on(Pinged)
        async def pong(event: Pinged, ctx: Context) -> None:
            seen.append(event.n)

        async def main() -> None:
            async with TestApp(app) as test:
                await test.publish(Pinged(n=1))
                await test.drain()
            assert seen == [1], seen

        asyncio.run(main())
        print("ran")
        """
    )
    assert result.returncode == 0 and "ran" in result.stdout, result.stderr


def test_the_cli_starts_without_cryptography() -> None:
    result = run("from choreograph.ops.cli import cli\nprint('loaded')\n")
    assert result.returncode == 0 and "loaded" in result.stdout, result.stderr


def test_using_security_names_the_extra_to_install() -> None:
    result = run("from choreograph.security import Security\n")
    assert result.returncode != 0 and "pip install 'choreograph[security]'" in result.stderr, result.stderr
