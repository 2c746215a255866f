"""The one kind of error a user is shown: a single line and an exit code, never a traceback.

Every module raises a subclass for what the user can fix (a bad config, an image that cannot
be built, a port already taken); `cli.main` catches `UserError` once, prints
`netboot COMMAND: <str(error)>` and exits with `exit_code`. Anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; str() is the whole line shown."""

    exit_code = 2
