"""One test's clients (`VmRun`) and the bed-wide constants tests share."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

from vmbed import artifacts
from vmbed.config import VmServe
from vmbed.qemu import ClientSpec, QemuClient

IMAGE_NAME = "vmtest"
# The same image with Debian's generic kernel (the cloud kernel has no e1000 driver); the
# e1000 clients are sent to it by their per-client `image` setting.
GENERIC_IMAGE_NAME = "vmtest-generic"
E1000_MACS = {"bios": "52:54:00:4e:42:e1", "uefi": "52:54:00:4e:42:e2"}
# The real-distribution client (make vm-test-full) boots the debootstrapped image.
DISTRO_IMAGE_NAME = "bookworm"
DISTRO_MAC = "52:54:00:4e:42:d1"
BOOT_TIMEOUT = float(os.environ.get("NETBOOT_VM_BOOT_TIMEOUT", "300"))
SERIAL_CONSOLE = "console=ttyS0"
# The Debian installer's netboot kernel and initrd (debian-installer-12-netboot-amd64), served
# as a config `[entries.installer]`; the client of this MAC boots it.
INSTALLER_DIR = Path("/usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64")
INSTALLER_ENTRY = "installer"
INSTALLER_MAC = "52:54:00:4e:42:a1"
# The rebuild test's first client: its init keeps printing its stamp instead of powering off.
HOLD_MAC = "52:54:00:4e:42:f0"
HOLD_SECONDS = 600
_macs = itertools.count(0x10)


def new_mac() -> str:
    """A MAC no other test of this session uses, so each client record is one test's."""
    return f"52:54:00:4e:42:{next(_macs):02x}"


class VmRun:
    """The clients of one test; on failure their consoles and records become artifacts."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.clients: list[tuple[QemuClient, VmServe]] = []
        self.logs: dict[str, Path] = {}

    def boot(
        self,
        server: VmServe,
        firmware: str,
        nic: str,
        mac: str | None = None,
        memory_mb: int = 512,
        name: str | None = None,
        secure_boot: bool = False,
        cpu: str = "x86_64",
        http_boot: bool = False,
    ) -> QemuClient:
        spec = ClientSpec(firmware, nic, mac or new_mac(), memory_mb, secure_boot, cpu, http_boot)
        name = name or f"{firmware}-{nic}-{spec.mac.replace(':', '')[-4:]}"
        client = QemuClient(server.net, spec, self.workdir, name).start()
        self.clients.append((client, server))
        self.logs.setdefault("server.log", server.log_path)
        if server.net.foreign_dhcp:
            self.logs.setdefault("dnsmasq.log", server.net.dnsmasq_log)
        return client

    def finish(self, failed: bool, nodeid: str) -> None:
        records: dict[str, object] = {}
        if failed:
            for client, server in self.clients:
                try:
                    records[client.spec.mac] = server.client(client.spec.mac)
                except Exception as exc:  # the server may be the thing that broke
                    records[client.spec.mac] = {"error": str(exc)}
        for client, _ in self.clients:
            client.stop()
        if failed:
            consoles = {client.name: client.text() for client, _ in self.clients}
            artifacts.save(nodeid, consoles, self.logs, records)
