"""The Kafka error table: each aiokafka failure becomes the choreograph error it names (no server needed)."""

from __future__ import annotations

import ssl

import pytest
from aiokafka import errors as kafka_errors

from choreograph.brokers.kafka.translation import ERRORS, translated
from choreograph.core.errors import BrokerError, BrokerUnavailable, ChoreographError, ConfigurationError
from tests.brokers.error_tables import check_every_row_used, check_pass_through, check_row

CASES = [
    (kafka_errors.SaslAuthenticationFailed("bad password"), ConfigurationError, "refused the SASL authentication"),
    (kafka_errors.IllegalSaslStateError("x"), ConfigurationError, "check sasl_mechanism, sasl_username"),
    (kafka_errors.KafkaConnectionError("no broker"), BrokerUnavailable, "kafka unreachable while trying to publish"),
    (kafka_errors.NodeNotReadyError("node 1"), BrokerUnavailable, "kafka unreachable while trying to publish"),
    (ConnectionRefusedError(111, "refused"), BrokerUnavailable, "kafka unreachable while trying to publish"),
    (ssl.SSLCertVerificationError(1, "certificate verify failed"), ConfigurationError, "not trusted"),
    (
        kafka_errors.KafkaTimeoutError("slow"),
        BrokerUnavailable,
        "kafka timed out while trying to publish: KafkaTimeoutError: slow",
    ),
    (kafka_errors.UnknownTopicOrPartitionError("t"), BrokerError, "kafka failed to publish: UnknownTopicOrPartition"),
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
