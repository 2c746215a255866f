"""The fast tests use the shared test bed's fixtures (`lan`, `bridge_lan`) and its rule that
root-only tests (marked `netns`, `vm` or `root`) are skipped for other users."""

import pytest

from netboot import ratelimit

pytest_plugins = ["testbed.plugin"]


@pytest.fixture(autouse=True)
def _fresh_log_rate_limits() -> None:
    """Each test starts with no rate-limited log line spent (netboot.ratelimit is global)."""
    ratelimit._limiters.clear()
