"""A router namespace running ISC's DHCP relay (`dhcrelay`) between a client segment and the
server segment, as a site with VLANs has: tests of netboot behind a relay agent."""

from __future__ import annotations

from pathlib import Path

from testbed.daemon import RouterDaemon
from testbed.netns import Namespace


class DhcpRelay(RouterDaemon):
    """`dhcrelay` in `router` (forwarding on): requests heard on `downstream` go to `servers`
    with giaddr set and option 82 added (-a); replies come back on `upstream`."""

    def __init__(
        self, router: Namespace, upstream: str, downstream: str, servers: list[str], log: Path
    ) -> None:
        argv = ["dhcrelay", "-d", "-4", "-a", "--no-pid", "-iu", upstream, "-id", downstream,
                *servers]  # fmt: skip
        super().__init__(router, argv, log, ready="Sending on")
