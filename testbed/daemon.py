"""A daemon of a router namespace (dhcrelay, smcrouted): started with forwarding on, its
output in a log file, ready once the log says so, stopped by its own pid."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Self

from testbed.cleanup import stop_process
from testbed.netns import Namespace


class RouterDaemon:
    """`argv` run in `router`; `start()` returns once its log holds `ready`."""

    def __init__(self, router: Namespace, argv: list[str], log: Path, ready: str) -> None:
        self.router = router
        self.argv = argv
        self.log = log
        self.ready = ready
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20) -> Self:
        self.router.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
        with open(self.log, "wb") as out:  # the child keeps its own copy
            self.proc = self.router.popen(*self.argv, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while self.ready not in self.text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.argv[0]} did not start:\n{self.text()}")
            time.sleep(0.2)
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace=3)
            self.proc = None
