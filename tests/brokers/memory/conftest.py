"""The memory broker's tests need no server; stress runs only with ``-m stress``."""

from choreograph.testing.pytest_plugin import pytest_collection_modifyitems

__all__ = ["pytest_collection_modifyitems"]
