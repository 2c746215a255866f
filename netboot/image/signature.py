"""Whether a kernel carries an Authenticode signature, for the Secure Boot warning of
`netboot image`.

`sbverify --list` exits 0 whether or not the file is signed (it prints "No signature table
present" on stderr for an unsigned one), so the answer comes from its output: a signed PE
image lists `signature 1`, ... on stdout.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

SIGNATURE_LINE = re.compile(r"^signature \d+$", re.MULTILINE)


def kernel_signed(kernel: Path) -> bool | None:
    """True when signed, False when not, None when sbverify (sbsigntool) is missing or
    fails to read the file."""
    if shutil.which("sbverify") is None:
        return None
    try:
        result = subprocess.run(
            ["sbverify", "--list", str(kernel)], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if SIGNATURE_LINE.search(result.stdout):
        return True
    return False if "No signature table" in result.stderr else None
