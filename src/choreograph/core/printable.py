"""Show untrusted text (event fields, names, error messages) as text on a terminal or in a log line.

Event types, keys, ids, topic and group names and payloads come from anyone
who can publish. Written raw, a terminal escape sequence in them would move the
cursor, retitle the window or hide what follows; a newline would forge a log
line; a bidi override would reorder what an operator reads. :func:`printable`
makes every such character visible as a Python-style escape instead.
"""

from __future__ import annotations

import unicodedata
from typing import Final

# Controls (C0, DEL, C1), format characters (bidi overrides and isolates, zero-width
# characters), line/paragraph separators and lone surrogates (which cannot even be encoded).
_HIDDEN: Final = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_NAMED: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(value: object, *, keep_newlines: bool = False) -> str:
    r"""Return ``str(value)`` with control, format and separator characters shown as escapes.

    ESC becomes ``\x1b``, a newline ``\n`` (kept as a real newline with
    ``keep_newlines``, for multi-line texts like tracebacks), U+202E ``\u202e``.
    Other characters, non-ASCII letters and emoji included, are unchanged.
    Never raises.
    """
    try:
        text = value if isinstance(value, str) else str(value)
    except Exception:  # a __str__ that fails must not take the caller down
        text = object.__repr__(value)
    if text.isprintable():
        return text
    return "".join(
        char if (keep_newlines and char == "\n") or unicodedata.category(char) not in _HIDDEN else _escape(char)
        for char in text
    )
