"""A router namespace forwarding multicast with static routes (`smcrouted`), as a site's
router between VLANs does with PIM or static multicast routes: tests of udpcast across it."""

from __future__ import annotations

from pathlib import Path

from testbed.daemon import RouterDaemon
from testbed.netns import Namespace


class MulticastRouter(RouterDaemon):
    """`smcrouted` in `router` (unicast forwarding on too): each route is (inbound interface,
    source, group, outbound interface). A source "*" makes a (*,G) template that smcrouted
    turns into a kernel (S,G) route when the first packet of a source arrives (the packets
    before that may be lost); a given source is an (S,G) route in the kernel from the start."""

    def __init__(
        self, router: Namespace, routes: list[tuple[str, str, str, str]], workdir: Path
    ) -> None:
        interfaces = sorted({r[0] for r in routes} | {r[3] for r in routes})
        lines = [f"phyint {name} enable" for name in interfaces]
        for inbound, source, group, outbound in routes:
            given = "" if source == "*" else f" source {source}"
            lines.append(f"mroute from {inbound}{given} group {group} to {outbound}")
        conf = workdir / "smcroute.conf"
        conf.write_text("\n".join(lines) + "\n")
        # foreground, no VIF but the ones named, own socket and pid file (never /run's)
        argv = ["smcrouted", "-n", "-N", "-l", "debug", "-f", str(conf),
                "-u", str(workdir / "smcroute.sock"),
                "-P", str(workdir / "smcroute.pid")]  # fmt: skip
        super().__init__(router, argv, workdir / "smcroute.log", ready="Ready, waiting")

    def forwarded(self) -> dict[tuple[str, str], int]:
        """Packets the kernel forwarded per (source, group), from /proc/net/ip_mr_cache."""
        table = self.router.run("cat", "/proc/net/ip_mr_cache", check=False).stdout
        counts: dict[tuple[str, str], int] = {}
        for line in table.splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 4:
                key = (_hex_address(fields[1]), _hex_address(fields[0]))
                counts[key] = counts.get(key, 0) + int(fields[3])
        return counts


def _hex_address(text: str) -> str:
    """/proc's address (host byte order, little-endian here) as a dotted quad."""
    value = int(text, 16)
    return ".".join(str((value >> shift) & 0xFF) for shift in (0, 8, 16, 24))
