"""`sort -V` order for kernel file names: 6.1.0-10 is newer than 6.1.0-9.

The comparison is Debian's (dpkg verrevcmp), which GNU sort -V uses after stripping file
suffixes: runs of digits compare as numbers, letters sort before other characters and
`~` sorts before everything, even the end of the string.
"""

from __future__ import annotations

import functools

_DIGITS = "0123456789"


def _order(char: str) -> int:
    if not char or char in _DIGITS:
        return 0
    if char.isascii() and char.isalpha():
        return ord(char)
    if char == "~":
        return -1
    return ord(char) + 256


def compare_versions(a: str, b: str) -> int:
    """Negative, zero or positive as a sorts before, with or after b."""
    i = j = 0
    while i < len(a) or j < len(b):
        while (i < len(a) and a[i] not in _DIGITS) or (j < len(b) and b[j] not in _DIGITS):
            ac = _order(a[i]) if i < len(a) else 0
            bc = _order(b[j]) if j < len(b) else 0
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        first_diff = 0
        while i < len(a) and a[i] in _DIGITS and j < len(b) and b[j] in _DIGITS:
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i] in _DIGITS:
            return 1
        if j < len(b) and b[j] in _DIGITS:
            return -1
        if first_diff:
            return first_diff
    return 0


version_key = functools.cmp_to_key(compare_versions)
"""Sort key: `sorted(names, key=version_key)` is `sort -V`."""
