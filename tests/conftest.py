"""Fixtures shared by the fast tests (defined in support/, registered here)."""

from __future__ import annotations

import os

import pytest
from support.lan import lan  # noqa: F401 - the module-scoped LAN fixture


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.geteuid() != 0:
        raise pytest.UsageError("netboot's tests need root (network namespaces, ports < 1024)")
