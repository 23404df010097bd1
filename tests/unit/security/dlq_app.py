"""A signing and encrypting App whose handler refuses some events, for the ``dlq edit`` tests.

The key ring and the data-key store are module globals: the test's App and
the CLI's ``--app tests.unit.security.dlq_app:cli_app`` (same process) share them.
"""

from __future__ import annotations

from typing import Annotated

from choreograph import App, Context, Event, Reject
from choreograph.runtime.retry import RetryPolicy
from choreograph.security import Encryption, KeyRing, MemoryKeyStore, Security, Sensitive, new_key


class Charge(Event, type="secdlq.charge"):
    kind: str
    card: Annotated[str, Sensitive()]


ring = KeyRing([new_key("secdlq"), new_key("orders")])
store = MemoryKeyStore()
handled: list[tuple[str, str, str]] = []


def charge_app(url: str) -> App:
    """``orders`` handles a Charge of kind ``ok`` and rejects any other."""
    app = App("secdlq", broker=url, security=Security(keys=ring, encryption=Encryption.of(store, [Charge])))

    @app.service("orders").on(Charge, retry=RetryPolicy(immediate=0, delayed=0))
    async def charge(event: Charge, ctx: Context) -> None:
        if event.kind != "ok":
            raise Reject(f"kind {event.kind}")
        handled.append((event.kind, event.card, ctx.envelope.source))

    return app


cli_app = charge_app("memory://")
