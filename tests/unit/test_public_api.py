"""The public API is declared once, in choreograph.__all__, and every name resolves."""

from __future__ import annotations

import choreograph

EXPECTED = {
    "App", "Broker", "BrokerClosed", "BrokerError", "BrokerUnavailable", "Capabilities", "ChoreographError",
    "CircuitBreaker", "Clock", "ConfigurationError", "ConsumerConfig", "Context", "ContractError", "DeadLetter",
    "DecodeError", "Delivery", "EncodeError", "Envelope", "Event", "FakeClock", "Handler", "HandlerOption",
    "Middleware", "MissingExtraError", "NotFound", "OptionsMiddleware", "Outcome", "Position", "RateLimit", "Record",
    "Reject", "Retry", "RetryPolicy", "Service",
    "Settlement", "Subscription", "SystemClock", "UnknownTopic", "__version__", "decode", "derived_id", "encode",
    "new_id", "open_broker",
}  # fmt: skip


def test_all_lists_exactly_the_public_names() -> None:
    assert set(choreograph.__all__) == EXPECTED
    assert len(choreograph.__all__) == len(set(choreograph.__all__))


def test_every_public_name_resolves() -> None:
    for name in choreograph.__all__:
        assert getattr(choreograph, name) is not None


def test_errors_share_one_root_and_inherit_stdlib_types() -> None:
    assert issubclass(choreograph.DecodeError, choreograph.ChoreographError)
    assert issubclass(choreograph.DecodeError, ValueError)
    assert issubclass(choreograph.BrokerUnavailable, ConnectionError)
    assert issubclass(choreograph.UnknownTopic, LookupError)
    assert issubclass(choreograph.MissingExtraError, ImportError)
