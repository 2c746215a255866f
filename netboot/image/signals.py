"""Turning SIGINT/SIGTERM into an exception, so every `finally` of a build unwinds.

A signal's default action would kill the process with mounts, loop devices and a half
written image behind; raising instead lets the build undo each step it took. Short
critical steps (switching symlinks, unmounting) hold signals until they are done.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType, TracebackType

from netboot.image.errors import ImageError

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(ImageError):
    """The build was stopped by a signal; exit code 128 + signal number, as a shell
    reports a process killed by it. `outcome` says what the interruption left behind."""

    def __init__(self, signum: int, outcome: str = "") -> None:
        line = f"interrupted by {signal.Signals(signum).name}"
        super().__init__(f"{line}; {outcome}" if outcome else line)
        self.signum = signum
        self.outcome = outcome
        self.exit_code = 128 + signum


def _raise(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signum)


@contextmanager
def interrupts_raise(outcome: str = "") -> Iterator[None]:
    """Within this block SIGINT, SIGTERM and SIGHUP raise `Interrupted`. An interruption
    leaving the block carries `outcome` ("nothing published"), so the one line the user
    sees says what state the signal left."""
    old = {s: signal.signal(s, _raise) for s in HANDLED}
    try:
        yield
    except Interrupted as exc:
        if outcome and not exc.outcome:
            raise Interrupted(exc.signum, outcome) from None
        raise
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


class DeferredInterrupts:
    """Hold the handled signals during a step that must not stop half way.

    A signal that arrived is raised as `Interrupted` at the end of the block, unless an
    exception is on its way out of it, or `reraise` is off because the block runs while
    another error unwinds (that one wins; the exit is non-zero either way).
    """

    def __init__(self, reraise: bool = True) -> None:
        self.reraise = reraise

    def __enter__(self) -> DeferredInterrupts:
        self.pending: list[int] = []
        self._old = {s: signal.signal(s, self._hold) for s in HANDLED}
        return self

    def _hold(self, signum: int, _frame: FrameType | None) -> None:
        self.pending.append(signum)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)
        if self.pending and self.reraise and exc_type is None:
            raise Interrupted(self.pending[0])
