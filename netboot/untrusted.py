"""Client-supplied text, made safe to store and to log.

Whatever a packet or a query string carries is clipped to a sane length before it is kept
(a record holds it for hours) and escaped before it reaches a log line (no newlines or
control characters: one request is one line, and a terminal shows what was sent).
"""

from __future__ import annotations

MAX_STORED = 128  # characters of one client-supplied value kept in a record
MAX_LOGGED = 96  # characters of one client-supplied value in a log line


def clip(value: str, limit: int = MAX_STORED) -> str:
    """`value` cut to `limit` characters, with a marker if it was longer."""
    if len(value) <= limit:
        return value
    return value[: max(limit - 3, 0)] + "..."


def for_log(value: object, limit: int = MAX_LOGGED) -> str:
    """`value` as one printable line: control characters and non-ASCII escaped like a
    Python literal (without the quotes), clipped to `limit` characters."""
    text = value if isinstance(value, str) else str(value)
    text = clip(text, limit * 4)  # escaping can grow it; don't escape megabytes first
    if text.isascii() and text.isprintable():
        return clip(text, limit)
    escaped = text.encode("unicode_escape").decode("ascii")
    return clip(escaped, limit)
