"""Failure groups: one fingerprint per dead letter, so that a thousand failures of one bug are one line.

A dead letter's fingerprint hashes what makes two failures "the same problem",
after ServicePulse's default grouping:

* the consumer group that gave up (``service.handler``);
* the reason (``error``, ``reject``, ``schema``, ``decode``, ``type``, ...);
* the exception type;
* the first stack frame in user code, read from the innermost frame outwards
  of the exception that was raised last (a chained cause's frames do not
  count): frames inside choreograph itself, installed packages
  (``site-packages``, ``dist-packages``) and the standard library are skipped.
  A frame is its file's last two path components and its function name — not
  its line number, so a deploy that moves a line keeps the group, and not the
  absolute path, so every process and machine computes the same fingerprint.

The error *message* is left out on purpose: it usually carries the event's
own values (an order id, an amount), which would give every event its own group.

The fingerprint is 16 hexadecimal digits (SHA-256 of the parts). Computing it
never raises, whatever text the stack and reason hold: a stack that cannot be
read just contributes no frame.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from choreograph.core.broker import DeadLetter

FINGERPRINT_LENGTH = 16
_FINGERPRINT = re.compile(rf"[0-9a-f]{{{FINGERPRINT_LENGTH}}}")
_FRAME = re.compile(r'^[\s|+]*File "(?P<path>[^"]*)", line \d+, in (?P<func>.+?)\s*$')
_TRACEBACK = re.compile(r"^[\s|+]*Traceback \(most recent call last\):\s*$")
# Path pieces that mark a frame as not the user's: choreograph's own layers (its bundled
# example apps are user code), installed packages, and the standard library.
_LIBRARY = re.compile(
    r"(^|/)(site-packages|dist-packages)/"
    r"|(^|/)lib/(pypy|python)3(\.\d+)?/"
    r"|^<frozen "
    r"|(^|/)choreograph/(core|runtime|brokers|schema|observe|outbox|ops|testing|security)/"
    r"|(^|/)choreograph/__(init|main)__\.py$"
)


def is_fingerprint(text: str) -> bool:
    """True if ``text`` has the shape of a fingerprint (16 lowercase hex digits).

    Consumer group names always hold a dot (``service.handler``), so a fingerprint
    and a group name never look alike.
    """
    return bool(_FINGERPRINT.fullmatch(text))


def user_frame(stack: str) -> str | None:
    """Return ``file.py:function`` of the innermost user-code frame of the last exception in ``stack``, or None.

    ``stack`` is a formatted Python traceback (``traceback.format_exception``);
    any other text gives None. Never raises for a ``str``.
    """
    try:
        lines = stack.replace("\\", "/").splitlines()
        starts = [i for i, line in enumerate(lines) if _TRACEBACK.match(line)]
        section = lines[starts[-1] :] if starts else lines
        frames = [m for m in map(_FRAME.match, section) if m]
        for match in reversed(frames):  # innermost first
            path = match.group("path")
            if _LIBRARY.search(path):
                continue
            tail = "/".join(path.rstrip("/").split("/")[-2:])
            return f"{tail}:{match.group('func')}"
        return None
    except Exception:  # a safety net: grouping must never stop a listing
        return None


def fingerprint(letter: DeadLetter) -> str:
    """Return the dead letter's failure-group fingerprint (see the module); never raises."""
    frame = user_frame(letter.stack) if isinstance(letter.stack, str) else None
    return fingerprint_of(letter.group, letter.reason, letter.error_type, frame)


def fingerprint_of(group: str, reason: str, error_type: str, frame: str | None) -> str:
    """Return the fingerprint of these parts (the pieces :func:`fingerprint` reads from a dead letter)."""
    parts = ("v1", group, reason, error_type, frame or "")
    raw = "\x00".join(str(p) for p in parts).encode("utf-8", "surrogatepass")
    return hashlib.sha256(raw).hexdigest()[:FINGERPRINT_LENGTH]


@dataclass(slots=True)
class FailureGroup:
    """Dead letters sharing one fingerprint: what they are, how many, and when."""

    fingerprint: str
    group: str
    reason: str
    error_type: str
    frame: str | None
    count: int = 0
    first_seen: float = 0.0
    last_seen: float = 0.0
    sample_id: str = ""
    sample_message: str = ""
    event_types: set[str] = field(default_factory=set)
    member_ids: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        """A one-line description: ``ErrorType at file.py:func in group (reason)``."""
        where = f" at {self.frame}" if self.frame else ""
        what = self.error_type or self.reason
        return f"{what}{where} in {self.group} ({self.reason})"


def failure_groups(letters: Iterable[DeadLetter]) -> list[FailureGroup]:
    """Group ``letters`` by fingerprint; the largest group first, then the most recent.

    The sample is the group's most recent dead letter.
    """
    groups: dict[str, FailureGroup] = {}
    for letter in letters:
        frame = user_frame(letter.stack) if isinstance(letter.stack, str) else None
        fp = fingerprint_of(letter.group, letter.reason, letter.error_type, frame)
        found = groups.get(fp)
        if found is None:
            found = groups[fp] = FailureGroup(
                fp, letter.group, letter.reason, letter.error_type, frame, first_seen=letter.first_failure
            )
        found.count += 1
        found.member_ids.append(letter.id)
        found.first_seen = min(found.first_seen, letter.first_failure)
        if letter.last_failure >= found.last_seen:
            found.last_seen = letter.last_failure
            found.sample_id = letter.id
            found.sample_message = letter.error_message
        if letter.event_type:
            found.event_types.add(letter.event_type)
    return sorted(groups.values(), key=lambda g: (-g.count, -g.last_seen, g.fingerprint))
