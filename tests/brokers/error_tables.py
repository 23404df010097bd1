"""Checks every backend's driver-error table passes: each row translates, every row is used, others pass through."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from choreograph.core.errors import ChoreographError

Case = tuple[BaseException, type[ChoreographError], str]
Translated = Callable[[str], AbstractAsyncContextManager[None]]


async def check_row(translated: Translated, raised: BaseException, expected: type[ChoreographError], text: str) -> None:
    """``raised`` inside ``translated`` comes out as exactly ``expected``, saying ``text``, caused by ``raised``."""
    with pytest.raises(ChoreographError) as caught:
        async with translated("publish"):
            raise raised
    assert type(caught.value) is expected
    assert text in str(caught.value)
    assert caught.value.__cause__ is raised


def check_every_row_used(errors: Sequence[Any], cases: Sequence[Case]) -> None:
    """The cases reach every row of the table (first match wins)."""
    used = {next(i for i, rule in enumerate(errors) if rule.matches(raised)) for raised, _, _ in cases}
    assert used == set(range(len(errors)))


async def check_pass_through(translated: Translated) -> None:
    """An exception that is not the driver's passes through untranslated."""
    with pytest.raises(KeyError):
        async with translated("publish"):
            raise KeyError("ours")
