"""Confining a client-supplied path to a served root, shared by TFTP and HTTP.

The check happens after resolving symlinks (realpath), so a symlink inside the root that
points outside it is refused, unlike lexical checks (tftpy's abspath, py3tftp).
"""

from __future__ import annotations

import os
from pathlib import Path


class UnsafePath(ValueError):
    """The requested path is not allowed; str() says why, for the log."""


def confine(root: Path, requested: str) -> Path:
    """Map a requested name to a real file path inside root, or raise UnsafePath.

    A leading '/' (sent by some PXE ROMs) and backslashes (Windows-style ROMs) are accepted
    as relative to the root. NUL bytes and '..' components are refused outright.
    """
    if "\x00" in requested:
        raise UnsafePath("NUL byte in path")
    try:
        os.fsencode(requested)
    except UnicodeEncodeError:  # a lone surrogate no file name can hold (found by hypothesis)
        raise UnsafePath("not a file name the file system can hold") from None
    name = requested.replace("\\", "/").lstrip("/")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise UnsafePath(f"'..' in path {requested!r}")
    real_root = os.path.realpath(root)
    candidate = os.path.realpath(os.path.join(real_root, *parts)) if parts else real_root
    if candidate != real_root and not candidate.startswith(real_root + os.sep):
        raise UnsafePath(f"{requested!r} resolves outside the root")
    return Path(candidate)
