"""An App for ``choreograph replay run`` tests: billing handles Shipped and emits Billed."""

from __future__ import annotations

from choreograph import App, Context, Event


class Shipped(Event, type="replayrun.shipped"):
    n: int


class Billed(Event, type="replayrun.billed"):
    n: int


app = App("biller")


@app.service("billing").on(Shipped)
async def bill(event: Shipped, ctx: Context) -> Billed:
    return Billed(n=event.n)
