"""Untrusted text is shown with every invisible or terminal-driving character as a visible escape."""

from __future__ import annotations

import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from choreograph.core.printable import printable

HIDDEN = {"Cc", "Cf", "Zl", "Zp", "Cs"}


@settings(max_examples=2000)
@given(st.text())
def test_the_output_has_no_control_format_or_separator_character(text: str) -> None:
    shown = printable(text)
    assert not any(unicodedata.category(char) in HIDDEN for char in shown)
    assert "\n" not in shown and "\r" not in shown and "\x1b" not in shown


@settings(max_examples=1000)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cf", "Zl", "Zp", "Cs"))))
def test_visible_text_is_unchanged(text: str) -> None:
    assert printable(text) == text


def test_escapes_name_the_character() -> None:
    assert printable("a\x1b[2Jb\n\r\t\x9b\u202e\U000e0041") == "a\\x1b[2Jb\\n\\r\\t\\x9b\\u202e\\U000e0041"
    assert printable("line\ntwo", keep_newlines=True) == "line\ntwo"
    assert printable("commande n°42 ✓ 注文 🎉") == "commande n°42 ✓ 注文 🎉"


def test_any_object_is_shown_even_when_its_str_fails() -> None:
    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert printable(42) == "42"
    assert "Broken object" in printable(Broken())
