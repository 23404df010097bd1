"""The Redis error table: each redis-py failure becomes the choreograph error it names (no server needed)."""

from __future__ import annotations

import ssl

import pytest
from redis import exceptions as redis_errors

from choreograph.brokers.redis.translation import ERRORS, translated
from choreograph.core.errors import BrokerError, BrokerUnavailable, ChoreographError, ConfigurationError

CASES = [
    (redis_errors.ConnectionError("Error 111 connecting to 127.0.0.1:1"), BrokerUnavailable, "redis unreachable while"),
    (redis_errors.TimeoutError("Timeout reading from socket"), BrokerUnavailable, "redis unreachable while"),
    (ConnectionRefusedError(111, "Connection refused"), BrokerUnavailable, "redis unreachable while"),
    (ssl.SSLCertVerificationError(1, "certificate verify failed"), ConfigurationError, "not trusted"),
    (redis_errors.AuthenticationError("invalid username-password pair"), ConfigurationError, "refused the credentials"),
    (redis_errors.ResponseError("NOAUTH Authentication required."), ConfigurationError, "requires authentication"),
    (redis_errors.ResponseError("ERR unknown command"), BrokerError, "redis failed to publish: ERR unknown command"),
]


@pytest.mark.parametrize(("raised", "expected", "text"), CASES)
async def test_each_row_of_the_table_translates_its_driver_errors(
    raised: BaseException, expected: type[ChoreographError], text: str
) -> None:
    with pytest.raises(ChoreographError) as caught:
        async with translated("publish"):
            raise raised
    assert type(caught.value) is expected
    assert text in str(caught.value)
    assert caught.value.__cause__ is raised


def test_every_row_is_exercised() -> None:
    used = {next(i for i, rule in enumerate(ERRORS) if rule.matches(raised)) for raised, _, _ in CASES}
    assert used == set(range(len(ERRORS)))


async def test_other_exceptions_pass_through() -> None:
    with pytest.raises(KeyError):
        async with translated("publish"):
            raise KeyError("ours")
