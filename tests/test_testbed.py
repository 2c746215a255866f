"""The shared test bed itself: a LAN of namespaces is isolated and leaves nothing behind."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from testbed.bridge_lan import BridgeLan

pytestmark = pytest.mark.netns


def test_lan_is_isolated_and_removed() -> None:
    bed = BridgeLan()
    try:
        client = bed.client("a")
        names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert bed.server.name in names and client.ns.name in names
        links = subprocess.run(
            ["ip", "-n", client.ns.name, "-o", "link"], capture_output=True, text=True
        ).stdout
        assert client.mac in links
        with bed.server.entered():
            assert "br0" in Path("/proc/self/net/dev").read_text()
        assert "br0" not in Path("/proc/self/net/dev").read_text()
    finally:
        bed.close()
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert bed.tag not in names
