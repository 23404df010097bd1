"""Translation of a JetStream message's headers into a delivery's headers, key and offset.

Our transport headers (:mod:`.naming`) can be written by anyone who can
publish to the partition subjects. A message whose ``Choreograph-Headers``
is not a JSON object of strings, whose ``Choreograph-Key`` is packed as
something else than a string, or whose ``Choreograph-Offset`` is not a
decimal offset — or appears outside a resubmission subject, where only
:meth:`NatsBroker.resubmit` sets it — is translated with a ``fault`` saying
what is wrong, never an exception. (nats-py itself reads header bytes that
are not UTF-8 as U+FFFD, so those never reach us as an error.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from choreograph.brokers.nats import naming as n

_SHOWN: Final = 40


def translate(
    wire: Mapping[str, str] | None, seq: int, subject: str
) -> tuple[dict[str, str], str | None, int, str | None]:
    """Return (headers, key, offset, fault) of a message at stream sequence ``seq``; never raises.

    ``subject`` is the message's: only on a resubmission subject
    (``<prefix>.T.p.r.G``) is an original offset header honoured. Without a fault the result is
    :func:`~.naming.from_wire`'s, and the offset is ``seq`` or the original
    offset of a resubmitted dead letter; with one, the offset is ``seq`` and the
    headers and key are what could be read.
    """
    if not wire:
        return {}, None, seq, None
    try:
        headers, key = n.from_wire(wire)
    except (ValueError, TypeError, AttributeError, RecursionError) as exc:  # a forged Choreograph-Headers
        return *_salvage(wire), seq, f"header {n.HEADERS_HEADER} is not a JSON object of strings: {_short(exc)}"
    if n.HEADERS_HEADER in wire and not _text_only(headers, key):
        return *_salvage(wire), seq, f"header {n.HEADERS_HEADER} is not a JSON object of UTF-8 strings"
    original = wire.get(n.OFFSET_HEADER)
    if original is None:
        return headers, key, seq, None
    if subject.count(".") < 4:
        return headers, key, seq, f"header {n.OFFSET_HEADER} on a record that was not resubmitted"
    if not (original.isascii() and original.isdigit()):
        return headers, key, seq, f"header {n.OFFSET_HEADER} is not an offset: {original[:_SHOWN]!r}"
    return headers, key, int(original), None


def _text_only(headers: dict[str, str], key: object) -> bool:
    """Whether unpacked headers and key are strings that encode as UTF-8 (JSON escapes can make lone surrogates)."""
    if key is not None and not isinstance(key, str):
        return False
    if not all(isinstance(v, str) for v in headers.values()):
        return False
    try:
        "".join((key or "", *headers, *headers.values())).encode()
    except UnicodeEncodeError:
        return False
    return True


def _salvage(wire: Mapping[str, str]) -> tuple[dict[str, str], str | None]:
    """Headers and key of a message whose packed headers are broken: the plain ones, the packed text as is."""
    headers = {
        name: value
        for name, value in wire.items()
        if isinstance(name, str) and isinstance(value, str) and name not in (n.KEY_HEADER, n.MSG_ID_HEADER)
        and not name.startswith("Nats-")
    }  # fmt: skip
    key = wire.get(n.KEY_HEADER)
    return headers, key if isinstance(key, str) else None


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 120 else text[:117] + "..."
