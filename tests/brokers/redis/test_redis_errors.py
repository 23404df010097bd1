"""The Redis error table: each redis-py failure becomes the choreograph error it names (no server needed)."""

from __future__ import annotations

import ssl

import pytest
from redis import exceptions as redis_errors

from choreograph.brokers.redis.translation import ERRORS, translated
from choreograph.core.errors import BrokerError, BrokerUnavailable, ChoreographError, ConfigurationError
from tests.brokers.error_tables import check_every_row_used, check_pass_through, check_row

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
    await check_row(translated, raised, expected, text)


def test_every_row_is_exercised() -> None:
    check_every_row_used(ERRORS, CASES)


async def test_other_exceptions_pass_through() -> None:
    await check_pass_through(translated)
