"""The netboot command line run as a child process, the way a user runs it."""

from __future__ import annotations

import subprocess
import sys

NETBOOT = [sys.executable, "-m", "netboot"]


def run_netboot(*args: str, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    """`netboot ARGS...`, output captured as text. The timeout only stops a hung command:
    an image build (mksquashfs, zstd) on a loaded 2-core machine can take minutes."""
    return subprocess.run(
        [*NETBOOT, *args], capture_output=True, text=True, timeout=timeout, **kwargs
    )
