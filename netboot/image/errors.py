"""The error the image tools show to the user, and how an OSError becomes one.

`ImageError` is a `UserError` that exits 1, not 2: the command line was fine, the build
failed (`cli.main` prints it). Whatever was being built is not published.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from netboot.errors import UserError


class ImageError(UserError):
    """A failure shown as one line; whatever was being built is not published."""

    exit_code = 1


def strerror_and_filename(exc: OSError) -> str:
    """`No space left on device: /srv/netboot/...`: how image and kernel show an OSError."""
    if exc.strerror is None:
        return str(exc)
    return f"{exc.strerror}: {exc.filename}"


@contextmanager
def os_errors_shown(describe: Callable[[OSError], str] = strerror_and_filename) -> Iterator[None]:
    """An OSError out of a build (disk full, a read-only root, permissions) is the user's
    to fix, not a bug: raise it as an ImageError of one line, `describe(exc)`."""
    try:
        yield
    except OSError as exc:
        raise ImageError(describe(exc)) from exc
