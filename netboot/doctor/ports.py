"""Are netboot's ports free (or held by netboot itself), and does a firewall drop them?

Sockets come from /proc/net/{udp,tcp}{,6} (this network namespace), their owners from the
`socket:[inode]` links in /proc/PID/fd. Firewall rules are read from `nft list ruleset` and
`iptables-save` when those exist: a drop or reject naming one of the ports is reported.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from netboot.config import Config
from netboot.doctor import Finding, note, ok, problem

PROC = Path("/proc")
TCP_LISTEN = "0A"


@dataclass(frozen=True)
class Port:
    number: int
    protocol: str  # "udp" or "tcp"
    role: str


@dataclass(frozen=True)
class Owner:
    pid: int
    name: str
    cmdline: str

    @property
    def is_netboot(self) -> bool:
        return "netboot" in self.cmdline and " serve" in self.cmdline


def wanted_ports(config: Config) -> list[Port]:
    server = config.server
    ports = []
    if server.dhcp != "off":
        ports += [Port(server.dhcp_port, "udp", "DHCP"), Port(server.proxy_port, "udp", "PXE")]
    if server.tftp_port:
        ports.append(Port(server.tftp_port, "udp", "TFTP"))
    if server.http_port:
        ports.append(Port(server.http_port, "tcp", "HTTP"))
    return ports


def socket_inodes(protocol: str, port: int, proc: Path = PROC) -> set[str]:
    """Inodes of the sockets bound to `port` (TCP: listening only), IPv4 and IPv6."""
    inodes = set()
    for name in (protocol, protocol + "6"):
        try:
            lines = (proc / "net" / name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or int(fields[1].rsplit(":", 1)[1], 16) != port:
                continue
            if protocol == "tcp" and fields[3] != TCP_LISTEN:
                continue
            inodes.add(fields[9])
    return inodes


def owners(inodes: set[str], proc: Path = PROC) -> list[Owner]:
    """The processes holding any of these socket inodes."""
    links = {f"socket:[{inode}]" for inode in inodes}
    found = []
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            held = any(str(fd.readlink()) in links for fd in (pid_dir / "fd").iterdir())
            if not held:
                continue
            name = (pid_dir / "comm").read_text().strip()
            cmdline = (
                (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            )
        except OSError:
            continue  # gone, or not ours to read
        found.append(Owner(int(pid_dir.name), name, cmdline.strip()))
    return found


def port_findings(config: Config) -> list[Finding]:
    findings = []
    for port in wanted_ports(config):
        label = f"{port.role} port {port.number}/{port.protocol}"
        inodes = socket_inodes(port.protocol, port.number)
        if not inodes:
            findings.append(ok(f"{label} is free"))
            continue
        holders = owners(inodes)
        if holders and all(h.is_netboot for h in holders):
            pids = ", ".join(str(h.pid) for h in holders)
            findings.append(ok(f"{label} is held by netboot serve (pid {pids})"))
            continue
        who = ", ".join(f"{h.name} (pid {h.pid})" for h in holders) or "a process not visible"
        fix = f"stop {who}" if holders else "find it with `ss -lunp`/`ss -ltnp` as root"
        if port.role == "HTTP":
            fix += f", or netboot serves HTTP on port {config.server.http_fallback_port} instead"
        findings.append(problem(f"{label} is taken by {who}", fix))
    return findings


DROP_RE = re.compile(r"\b(drop|reject)\b", re.I)
NFT_PORTS_RE = re.compile(r"dport\s+(\{[^}]*\}|\d+)")
IPT_PORTS_RE = re.compile(r"--dports?\s+([\d,:]+)")


def dropped_ports(ruleset: str, ports: set[int]) -> list[tuple[int, str]]:
    """(port, rule) for every drop/reject rule (nft or iptables-save syntax) naming a port."""
    found = []
    for line in ruleset.splitlines():
        if not DROP_RE.search(line) or line.lstrip().startswith(("#", ":")):
            continue
        named: set[int] = set()
        for match in NFT_PORTS_RE.findall(line) + IPT_PORTS_RE.findall(line):
            for item in re.split(r"[,\s{}]+", match):
                if "-" in item or ":" in item:
                    low, high = re.split(r"[-:]", item, maxsplit=1)
                    if low.isdigit() and high.isdigit():
                        named |= {p for p in ports if int(low) <= p <= int(high)}
                elif item.isdigit():
                    named.add(int(item))
        found += [(port, line.strip()) for port in sorted(named & ports)]
    return found


def firewall_findings(config: Config) -> list[Finding]:
    ports = {port.number for port in wanted_ports(config)}
    tools = {"nft": ["nft", "list", "ruleset"], "iptables-save": ["iptables-save"]}
    present = {name: cmd for name, cmd in tools.items() if shutil.which(cmd[0])}
    if not present:
        return [note("no nft or iptables-save here: firewall rules not checked")]
    findings = []
    for name, cmd in present.items():
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            findings.append(note(f"{name} failed: firewall rules not checked", "run as root"))
            continue
        for port, rule in dropped_ports(result.stdout, ports):
            findings.append(
                problem(f"firewall ({name}) drops port {port}: {rule}", "allow it from the LAN")
            )
    if not any(f.level != "ok" for f in findings):
        findings.append(ok(f"no firewall rule drops ports {', '.join(map(str, sorted(ports)))}"))
    return findings
