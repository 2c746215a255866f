"""Running mksquashfs: excludes, priority prefix, progress, and a clean stop.

mksquashfs 4.5 has no machine-readable progress (`-percentage` came in 4.6). It draws
its bar ('\\r[=====/    ] 400/1600  25%') every 250 ms on a terminal, but into a pipe
only every 100 blocks, so it writes to a pseudo-terminal of known width and we read the
bar from there. It runs in its own session with a parent-death signal, so a Ctrl-C
reaches only us (we stop it and undo the build) and a SIGKILL of netboot takes
mksquashfs with it.
"""

from __future__ import annotations

import collections
import ctypes
import errno
import fcntl
import os
import pty
import re
import shlex
import shutil
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from netboot.image.errors import ImageError

PR_SET_PDEATHSIG = 1
PROGRESS_RE = re.compile(rb"\]\s+(\d+)/(\d+)\s+(\d+)%")
UNCOMPRESSED_RE = re.compile(rb"of uncompressed filesystem size \(([\d.]+) Kbytes\)")
FIXED_PARAMS = ("-noappend", "-wildcards")
TERMINAL_COLUMNS = 100


@dataclass(frozen=True)
class SquashResult:
    size: int
    uncompressed: int | None
    seconds: float


def default_prefix() -> list[str]:
    """`nice ionice -c3` when ionice works here (it fails in some containers), else nice."""
    prefix = ["nice"] if shutil.which("nice") else []
    if shutil.which("ionice"):
        probe = subprocess.run(["ionice", "-c3", "true"], capture_output=True, check=False)
        if probe.returncode == 0:
            prefix += ["ionice", "-c3"]
    return prefix


def split_params(text: str, what: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise ImageError(f"{what}: {exc}") from None


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _read(master: int) -> bytes:
    """Read the pseudo-terminal; EIO means every writer has gone, i.e. end of output."""
    try:
        return os.read(master, 65536)
    except OSError as exc:
        if exc.errno == errno.EIO:
            return b""
        raise


def mksquashfs(
    tree: Path,
    output: Path,
    exclude_file: Path,
    params: list[str],
    prefix: list[str],
    on_progress: Callable[[int], None],
) -> SquashResult:
    """Squash tree into output; raises ImageError with mksquashfs's own complaint."""
    command = [*prefix, "mksquashfs", str(tree), str(output), *FIXED_PARAMS]
    command += ["-ef", str(exclude_file), *params]
    started = time.monotonic()
    tail: collections.deque[bytes] = collections.deque(maxlen=20)
    uncompressed = None
    master, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, TERMINAL_COLUMNS, 0, 0))
    try:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=terminal,
            stderr=terminal,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # safe: the image CLI runs no other threads
        )
    except FileNotFoundError as exc:
        os.close(master)
        raise ImageError(f"{exc.filename} not found; install it") from None
    finally:
        os.close(terminal)
    try:
        pending = b""
        while chunk := _read(master):
            pending += chunk
            *pieces, pending = re.split(rb"[\r\n]", pending)
            for piece in pieces:
                match = PROGRESS_RE.search(piece)
                if match:
                    on_progress(int(match.group(3)))
                    continue
                size = UNCOMPRESSED_RE.search(piece)
                if size:
                    uncompressed = int(float(size.group(1)) * 1024)
                if piece.strip():
                    tail.append(piece.strip())
        returncode = process.wait()
    finally:
        _stop(process)
        os.close(master)
    if returncode != 0:
        message = tail[-1].decode(errors="replace") if tail else f"exit status {returncode}"
        raise ImageError(f"mksquashfs failed: {message}")
    return SquashResult(output.stat().st_size, uncompressed, time.monotonic() - started)
