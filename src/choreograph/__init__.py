"""choreograph: event choreography for Python services.

Services publish domain events and react to each other's events through a
durable log, with no central orchestrator. This module is the public API; what
is not listed in ``__all__`` may change without notice.
"""

from choreograph.brokers import open_broker
from choreograph.core.broker import (
    Broker,
    Capabilities,
    DeadLetter,
    Delivery,
    Position,
    Record,
    Settlement,
    Subscription,
)
from choreograph.core.clock import Clock, FakeClock, SystemClock
from choreograph.core.codec import decode, encode
from choreograph.core.envelope import Envelope
from choreograph.core.errors import (
    BrokerClosed,
    BrokerError,
    BrokerUnavailable,
    ChoreographError,
    ConfigurationError,
    ContractError,
    DecodeError,
    EncodeError,
    MissingExtraError,
    NotFound,
    Reject,
    Retry,
    UnknownTopic,
)
from choreograph.core.event import Event
from choreograph.core.ids import derived_id, new_id
from choreograph.runtime.app import App
from choreograph.runtime.breaker import CircuitBreaker
from choreograph.runtime.consumer import ConsumerConfig
from choreograph.runtime.context import Context, Outcome
from choreograph.runtime.middleware import Handler, Middleware, OptionsMiddleware
from choreograph.runtime.options import HandlerOption, RateLimit
from choreograph.runtime.retry import RetryPolicy
from choreograph.runtime.service import Service

__version__ = "0.1.0"

__all__ = [
    "App",
    "Broker",
    "BrokerClosed",
    "BrokerError",
    "BrokerUnavailable",
    "Capabilities",
    "ChoreographError",
    "CircuitBreaker",
    "Clock",
    "ConfigurationError",
    "ConsumerConfig",
    "Context",
    "ContractError",
    "DeadLetter",
    "DecodeError",
    "Delivery",
    "EncodeError",
    "Envelope",
    "Event",
    "FakeClock",
    "Handler",
    "HandlerOption",
    "Middleware",
    "MissingExtraError",
    "NotFound",
    "OptionsMiddleware",
    "Outcome",
    "Position",
    "RateLimit",
    "Record",
    "Reject",
    "Retry",
    "RetryPolicy",
    "Service",
    "Settlement",
    "Subscription",
    "SystemClock",
    "UnknownTopic",
    "__version__",
    "decode",
    "derived_id",
    "encode",
    "new_id",
    "open_broker",
]
