"""Last-resort cleanup: whatever the bed creates is registered here and removed at exit.

Fixtures clean up in `finally`; this covers the paths they cannot: Ctrl-C between tests,
SIGTERM from CI, or a crash in a fixture. Only things this process created are touched
(processes by their own pid, namespaces by their own name).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable

_lock = threading.Lock()
_actions: dict[int, Callable[[], None]] = {}
_next_id = 0
_installed = False


def register(action: Callable[[], None]) -> int:
    """Run `action` at exit unless `done(id)` is called first; returns the id."""
    global _next_id
    _install()
    with _lock:
        _next_id += 1
        _actions[_next_id] = action
        return _next_id


def done(action_id: int) -> None:
    with _lock:
        _actions.pop(action_id, None)


def run_all() -> None:
    """Run pending actions, newest first (processes die before their namespaces go)."""
    with _lock:
        pending = sorted(_actions.items(), reverse=True)
        _actions.clear()
    for _, action in pending:
        with contextlib.suppress(Exception):
            action()


def _on_signal(signum: int, _frame: object) -> None:
    # Clean up first, then stop the whole run the way Ctrl-C does: pytest ends the session
    # on KeyboardInterrupt, whereas SystemExit would only fail one test and go on with the
    # next ones on a bed that is gone.
    run_all()
    raise KeyboardInterrupt(f"signal {signum}")


def _install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    atexit.register(run_all)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _on_signal)


def stop_process(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL; only this Popen's own pid."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
