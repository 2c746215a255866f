"""The Secure Boot chain of `loader = "grub"` (docs/secure-boot.md): signed shim and GRUB
for each CPU, where `netboot serve` places them, and the next-server GRUB reads its menu from.

Checked only when some client may get the chain (`grub.uses_grub`). The files are judged the
way `prepare_root` places them: a CPU is served if both files are in the TFTP root already or
both sources named by `[grub]` exist (serve copies them at start).
"""

from __future__ import annotations

from pathlib import Path

from netboot.boot import grub
from netboot.boot.arch import firmware_name
from netboot.config import Config
from netboot.dhcp.detect import Offer
from netboot.doctor import Finding, note, ok, problem

REQUIRED = {grub.X64}  # most Secure Boot machines; arm64 only if the site has them
INSTALL = {
    grub.X64: "apt-get install shim-signed grub-efi-amd64-signed (or point [grub] shim_x64 "
    "and grub_x64 at signed files)",
    grub.ARM64: "only if you have arm64 UEFI machines: unpack shim-signed:arm64 and "
    "grub-efi-arm64-signed:arm64 and set [grub] shim_arm64 and grub_arm64 "
    "(docs/secure-boot.md, arm64)",
}


def _firmware(chain: grub.ShimChain) -> str:
    names = [firmware_name(arch) for arch, each in grub.CHAINS.items() if each == chain]
    return "/".join(dict.fromkeys(names))


def chain_finding(config: Config, chain: grub.ShimChain) -> Finding:
    """Whether this CPU's clients get shim and GRUB: placed already, or placed by serve."""
    firmware = _firmware(chain)
    served = [config.tftp_root / path for path in (chain.shim_path, chain.grub_path)]
    sources = [Path(getattr(config.grub, key)) for key in (chain.shim_key, chain.grub_key)]
    got = f"{firmware} Secure Boot clients get {chain.shim_path} and {chain.grub_path}"
    if all(source.is_file() for source in sources):
        return ok(f"{got} (serve copies them from [grub] {chain.shim_key}, {chain.grub_key})")
    if all(path.is_file() for path in served):
        return ok(f"{got} (in {config.tftp_root})")
    absent = [str(path) for path in served + sources if not path.is_file()]
    text = f"loader grub: no signed shim and GRUB for {firmware} clients ({', '.join(absent)})"
    if chain in REQUIRED:
        return problem(text, INSTALL[chain])
    return note(text, INSTALL[chain])


def shim_findings(config: Config) -> list[Finding]:
    if not grub.uses_grub(config):
        return []
    findings = []
    if config.tftp_root != config.root:
        findings.append(
            problem(
                f"loader grub with server.tftp_root {config.tftp_root}: GRUB fetches kernels "
                f"and initrds over TFTP by their paths in {config.root}",
                "leave server.tftp_root unset (docs/secure-boot.md)",
            )
        )
    return findings + [chain_finding(config, c) for c in dict.fromkeys(grub.CHAINS.values())]


def next_server_findings(
    config: Config, own: set[str], offers: list[Offer] | None
) -> list[Finding]:
    """GRUB ignores the proxyDHCP answer and reads its menu from the site DHCP server's
    next-server (siaddr). `offers`: the site's address-giving offers, None when not asked."""
    mode = config.server.dhcp
    if mode == "full" or not grub.uses_grub(config):
        return []
    address = " or ".join(sorted(own)) or "netboot's address"
    one = min(own, default="NETBOOT_IP")
    fix = (
        f"set next-server on the site's DHCP server to {address} (dnsmasq: dhcp-boot=,,{one}; "
        f"ISC dhcpd: next-server {one};), or run netboot with --dhcp full (docs/secure-boot.md)"
    )
    if offers is None:
        return [
            note(
                f"loader grub with dhcp {mode}: GRUB takes its TFTP server from the site DHCP "
                "server's next-server, not from netboot (not checked)",
                fix,
            )
        ]
    by_server = {offer.server: offer for offer in offers}
    wrong = [o for o in by_server.values() if o.next_server not in own]
    if not by_server:
        return []  # no site DHCP server at all: judge() already says proxy mode needs one
    if not wrong:
        servers = ", ".join(by_server)
        return [ok(f"DHCP server {servers} gives next-server {address}: GRUB finds its menu")]
    return [
        problem(
            f"loader grub with dhcp {mode}: DHCP server {o.server} gives next-server "
            f"{o.next_server}, not {address}: GRUB clients stop at a grub> prompt",
            fix,
        )
        for o in wrong
    ]
