"""A quiet app for ``choreograph run`` tests of the startup lines (run with ``--broker``)."""

from __future__ import annotations

from choreograph import App, Context, Event


class Noted(Event, type="retention.noted"):
    n: int


app = App("retention")


@app.service("svc").on(Noted)
async def noted(event: Noted, ctx: Context) -> None:
    return None
