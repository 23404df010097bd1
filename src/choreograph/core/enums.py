"""The closed sets of words the backends store and compare: start positions, dead-letter status and reason.

Each is a :class:`~enum.StrEnum`: a member *is* its string (``DeadLetterStatus.OPEN == "open"``,
``str(DeadLetterStatus.OPEN) == "open"``, JSON and SQL parameters write ``open``), so stored data,
CLI output and callers that still pass plain strings are unchanged. Comparing against a member
instead of a literal lets a type checker and a reader find every use.
"""

from __future__ import annotations

from enum import StrEnum, unique


@unique
class StartKind(StrEnum):
    """The form of a :class:`~choreograph.core.broker.Position`."""

    EARLIEST = "earliest"
    """From the oldest retained record."""
    LATEST = "latest"
    """After the newest record: only records published from now on."""
    TIME = "time"
    """From the first record published at or after a time."""
    OFFSETS = "offsets"
    """From a given offset per partition."""


@unique
class DeadLetterStatus(StrEnum):
    """Where a dead letter stands."""

    OPEN = "open"
    """Waiting for an operator: neither resubmitted nor purged."""
    RESUBMITTED = "resubmitted"
    """Handed back to the group that gave up on it."""
    PURGED = "purged"
    """Marked as dealt with (kept until deleted or its retention passes)."""


@unique
class DeadLetterReason(StrEnum):
    """Why a record was dead-lettered."""

    ERROR = "error"
    """The handler failed and its retries are exhausted (or an output could not be encoded)."""
    DECODE = "decode"
    """The record's bytes are not an envelope (or the backend could not translate the record)."""
    REJECT = "reject"
    """The handler raised ``Reject``."""
    SCHEMA = "schema"
    """The event failed validation or upcasting."""
    TYPE = "type"
    """An event of another type on a topic whose handler dead-letters unknown types."""
    PARKED = "parked"
    """Held back behind an earlier dead letter of the same key (``Sequenced`` handlers)."""
    SECURITY = "security"
    """The event failed a security check (the base of the three below)."""
    SIGNATURE = "signature"
    """The event is unsigned where a signature is required, signed by an unknown key, or altered."""
    UNAUTHORIZED = "unauthorized"
    """The event's verified signer may not publish its type."""
    DECRYPT = "decrypt"
    """An encrypted payload cannot be read (its data key is gone or unknown, or it does not open)."""
