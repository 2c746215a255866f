"""Writing a file so that readers (and a crash) see the old content or the new, never half.

Temp file in the same directory, fsync, rename over the target, fsync of the directory so
the rename itself survives a power cut. Blocking: call it from a thread in async code.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomically(
    path: Path, data: bytes, *, replace: bool = True, prefix: str | None = None, mode: int = 0o644
) -> None:
    """Write data to path. With replace=False an existing file is never overwritten (the
    final step is a hard link, which fails with FileExistsError if path appeared)."""
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=prefix or f".{path.name}.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        if replace:
            os.replace(temp, path)
        else:
            os.link(temp, path)
            os.unlink(temp)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
