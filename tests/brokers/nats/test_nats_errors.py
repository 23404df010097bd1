"""The NATS error table: each nats-py failure becomes the choreograph error it names (no server needed)."""

from __future__ import annotations

import nats.errors
import nats.js.errors
import pytest

from choreograph.brokers.nats.translation import ERRORS, translate, translated
from choreograph.core.errors import BrokerClosed, BrokerError, BrokerUnavailable, UnknownTopic

CASES = [
    (nats.errors.ConnectionClosedError(), BrokerClosed),
    (nats.errors.ConnectionDrainingError(), BrokerClosed),
    (nats.errors.NoServersError(), BrokerUnavailable),
    (nats.errors.TimeoutError(), BrokerUnavailable),
    (nats.errors.NoRespondersError(), BrokerUnavailable),
    (TimeoutError(), BrokerUnavailable),
    (ConnectionResetError(104, "reset"), BrokerUnavailable),
    (nats.js.errors.NotFoundError(code=404, err_code=10059, description="stream not found"), UnknownTopic),
    (nats.js.errors.APIError(code=503, description="JetStream system temporarily unavailable"), BrokerUnavailable),
    (nats.js.errors.NotFoundError(code=404, err_code=10014, description="consumer not found"), BrokerError),
    (nats.js.errors.BadRequestError(code=400, description="bad"), BrokerError),
]


@pytest.mark.parametrize(("raised", "expected"), CASES)
def test_each_row_of_the_table_translates_its_driver_errors(raised: BaseException, expected: type[BrokerError]) -> None:
    with pytest.raises(BrokerError) as caught, translated("publish"):
        raise raised
    assert type(caught.value) is expected
    assert str(caught.value).startswith(f"NATS publish failed: {type(raised).__name__}: ")
    assert caught.value.__cause__ is raised


def test_every_row_is_exercised() -> None:
    used = {next(i for i, rule in enumerate(ERRORS) if rule.matches(raised)) for raised, _ in CASES}
    assert used == set(range(len(ERRORS)))


def test_a_broker_error_is_returned_as_it_is() -> None:
    ours = UnknownTopic("already ours")
    assert translate(ours, "publish") is ours
