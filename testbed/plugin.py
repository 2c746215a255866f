"""The test bed's pytest plugin: its fixtures, and root-only tests skipped for other users.

Tests marked `netns`, `vm` or `root` need root (network namespaces, tap devices, ports below
1024, mounts); run by another user they are skipped with the reason, so the rest still runs.
"""

from __future__ import annotations

import os

import pytest

from testbed import netns
from testbed.bridge_lan import bridge_lan  # noqa: F401 - a switched LAN made per test
from testbed.image_source import served  # noqa: F401 - a source tree and a served root
from testbed.lan import lan  # noqa: F401 - the module-scoped LAN with netboot serve

ROOT_MARKERS = ("netns", "vm", "root")


def is_root() -> bool:
    return os.geteuid() == 0


@pytest.hookimpl(trylast=True)  # after vm-tests/conftest.py has marked its items
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if is_root():
        return
    for item in items:
        needs = [name for name in ROOT_MARKERS if item.get_closest_marker(name)]
        if needs:
            reason = f"needs root ({', '.join(needs)}): run as root, e.g. `sudo make test`"
            item.add_marker(pytest.mark.skip(reason=reason))


def pytest_sessionstart(session: pytest.Session) -> None:
    if is_root():
        netns.remove_stale_namespaces()  # what a run killed with SIGKILL left behind
