"""A router namespace running ISC's DHCP relay (`dhcrelay`) between a client segment and the
server segment, as a site with VLANs has: tests of netboot behind a relay agent."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from testbed.cleanup import stop_process
from testbed.netns import Namespace


class DhcpRelay:
    """`dhcrelay` in `router` (forwarding on): requests heard on `downstream` go to `servers`
    with giaddr set and option 82 added (-a); replies come back on `upstream`."""

    def __init__(
        self, router: Namespace, upstream: str, downstream: str, servers: list[str], log: Path
    ) -> None:
        self.router = router
        self.log = log
        self.argv = ["dhcrelay", "-d", "-4", "-a", "--no-pid", "-iu", upstream, "-id",
                     downstream, *servers]  # fmt: skip
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20) -> DhcpRelay:
        self.router.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
        with open(self.log, "wb") as out:  # the child keeps its own copy
            self.proc = self.router.popen(*self.argv, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while "Sending on" not in self.text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dhcrelay did not start:\n{self.text()}")
            time.sleep(0.2)
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace=3)
            self.proc = None
