"""The netboot command line run as a child process, the way a user runs it."""

from __future__ import annotations

import subprocess
import sys

NETBOOT = [sys.executable, "-m", "netboot"]


def run_netboot(*args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """`netboot ARGS...`, output captured as text."""
    return subprocess.run(
        [*NETBOOT, *args], capture_output=True, text=True, timeout=timeout, **kwargs
    )
