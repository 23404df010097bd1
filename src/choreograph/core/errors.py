"""Errors raised by choreograph.

Every error derives from :class:`ChoreographError`; where a stdlib type fits,
the error inherits it too, so ``except ValueError`` keeps working::

    ChoreographError
    ├── ConfigurationError (ValueError)      bad option, unknown URL scheme, missing extra
    │   └── MissingExtraError (ImportError)  an optional integration is not installed
    ├── ContractError (TypeError)            an Event class breaks the contract (no type name, ...)
    │   └── InvalidEventName (+ ConfigurationError)  its type or topic breaks the naming rule
    ├── DecodeError (ValueError)             bytes on the wire are not a valid envelope
    ├── EncodeError (ValueError)             an envelope cannot be encoded (too large, ...)
    ├── BrokerError                          the broker failed; raised at the broker boundary
    │   ├── BrokerUnavailable (ConnectionError)  cannot reach the broker
    │   ├── BrokerClosed                     the broker or subscription was closed
    │   ├── LeaseLost                        a member settled or fetched a partition it no longer holds
    │   ├── StorageLost                      the broker's storage was deleted, replaced or truncated
    │   └── UnknownTopic (LookupError)       the topic does not exist
    ├── NotFound (LookupError)               a dead letter, group or record does not exist
    └── HandlerControl                       control flow raised by a handler
        ├── Retry                            retry this event, optionally after a delay
        └── Reject                           do not retry; dead-letter with a reason

Broker SDK errors never escape a backend: each backend translates them into
:class:`BrokerError` subclasses at its boundary.
"""

from __future__ import annotations


class ChoreographError(Exception):
    """Root of every error choreograph raises on purpose."""


class ConfigurationError(ChoreographError, ValueError):
    """An option, URL or declaration is invalid; the message says how to fix it."""


class MissingExtraError(ConfigurationError, ImportError):
    """An optional integration is used but its extra is not installed."""

    def __init__(self, feature: str, extra: str, module: str) -> None:
        super().__init__(
            f"{feature} needs the optional dependency {module!r}; install it with: pip install 'choreograph[{extra}]'"
        )
        self.extra = extra


class ContractError(ChoreographError, TypeError):
    """An Event class or handler breaks a declared contract."""


class InvalidEventName(ContractError, ConfigurationError):
    """An Event class declares a type or topic that breaks the naming rule (see ``core.names``).

    Both a ContractError (the class is malformed, like the other declaration
    errors) and a ConfigurationError (a name was refused, like any other).
    """


class DecodeError(ChoreographError, ValueError):
    """Bytes received are not a valid CloudEvents envelope. Never retried."""


class EncodeError(ChoreographError, ValueError):
    """An envelope cannot be encoded (for example it exceeds the size limit)."""


class BrokerError(ChoreographError):
    """The broker failed an operation."""


class BrokerUnavailable(BrokerError, ConnectionError):
    """The broker cannot be reached."""


class BrokerClosed(BrokerError):
    """The broker or subscription is closed."""


class LeaseLost(BrokerError):
    """This member no longer holds a partition it fetched from; nothing of its settle was applied.

    The partition's new owner redelivers what the member held; the member
    should leave the group and join again (the runtime resubscribes).
    """


class StorageLost(BrokerError):
    """The broker's storage is gone (a deleted, replaced or truncated database file).

    Not transient: retrying cannot help, so a worker should stop (exit
    non-zero) and let its supervisor restart it against sound storage.
    """


class UnknownTopic(BrokerError, LookupError):
    """The topic does not exist."""


class NotFound(ChoreographError, LookupError):
    """The requested dead letter, group or record does not exist."""


class HandlerControl(ChoreographError):
    """Base of the exceptions a handler raises to steer delivery."""


class Retry(HandlerControl):
    """Retry the current event, after ``after`` seconds if given.

    Counts as a failed attempt: the retry policy's attempt limit still applies.
    """

    def __init__(self, reason: str = "retry requested", *, after: float | None = None) -> None:
        super().__init__(reason)
        if after is not None and after < 0:
            raise ConfigurationError(f"Retry(after={after}) must be >= 0 seconds")
        self.after = after


class Reject(HandlerControl):
    """Give up on the current event: dead-letter it now, without retries."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
