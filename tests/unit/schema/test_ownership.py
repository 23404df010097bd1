"""Service ownership: declared on App.service, carried to the catalog and the AsyncAPI document."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from choreograph import App, ConfigurationError, Context, Event
from choreograph.schema import asyncapi_document, render_catalog
from choreograph.schema.topology import Ownership

ASYNCAPI_SCHEMA = Path(__file__).parents[2] / "data" / "asyncapi-3.0.0.schema.json"


class Charged(Event, type="own.charged"):
    order_id: str


class Placed(Event, type="own.placed"):
    order_id: str


def owned_app() -> App:
    app = App("own", broker="memory://")
    payment = app.service(
        "payment", owner="payments", oncall="#payments-oncall", escalation=["payments-lead", "cto@example.com"]
    )
    app.service("orders").publishes(Placed)

    @payment.on(Placed)
    async def charge(event: Placed, ctx: Context) -> Charged:
        return Charged(order_id=event.order_id)

    return app


def test_ownership_is_declared_once_and_checked() -> None:
    app = owned_app()
    assert app.services["payment"].ownership == Ownership(
        "payments", "#payments-oncall", ("payments-lead", "cto@example.com")
    )
    assert app.service("payment") is app.services["payment"]  # no ownership given: unchanged
    assert app.service("orders", owner="shopfront").ownership == Ownership("shopfront")  # declared later: set
    with pytest.raises(ConfigurationError, match="already owned"):
        app.service("payment", owner="someone-else")
    with pytest.raises(ConfigurationError, match="need owner"):
        app.service("shipping", oncall="#nobody")
    with pytest.raises(ConfigurationError, match="control characters"):
        app.service("shipping", owner="evil\x1b[2J")
    assert Ownership("payments", "#p", ("a", "b")).labels() == {
        "team": "payments",
        "oncall": "#p",
        "escalation": "a -> b",
    }


def test_asyncapi_carries_owner_extensions_and_stays_valid() -> None:
    doc = asyncapi_document(owned_app().topology())
    validator = jsonschema.Draft7Validator(json.loads(ASYNCAPI_SCHEMA.read_text()))
    assert [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)] == []
    receive = doc["operations"]["payment.receive.charge"]
    assert receive["x-owner"] == "payments"
    assert receive["x-oncall"] == "#payments-oncall"
    assert receive["x-escalation"] == ["payments-lead", "cto@example.com"]
    send = doc["operations"]["payment.send.own.charged.v1"]
    assert send["x-owner"] == "payments"
    assert "x-owner" not in doc["operations"]["orders.send.own.placed.v1"]  # unowned service: nothing invented
    assert doc["x-choreograph-owners"] == {
        "payment": {
            "owner": "payments",
            "oncall": "#payments-oncall",
            "escalation": ["payments-lead", "cto@example.com"],
        }
    }


def test_catalog_lists_owner_oncall_and_escalation() -> None:
    text = render_catalog(owned_app().topology())
    row = next(line for line in text.splitlines() if line.startswith("| payment |"))
    assert "| payments | #payments-oncall | payments-lead → cto@example.com |" in row
    orders = next(line for line in text.splitlines() if line.startswith("| orders |"))
    assert orders.startswith("| orders | - | - | - |")
    assert "- **Owner:** payment (team payments)" in text
