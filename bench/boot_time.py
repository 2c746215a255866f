"""Where a network boot's time goes: power-on to each step the server records, per client kind.

Builds the vm-tests bed (namespaces, dnsmasq as the site's DHCP server, `netboot serve
--dhcp proxy`, the busybox test image), boots each kind of client once and prints, for each
step, the seconds from QEMU's start to the first time the server recorded it, and to the
image's init. Run as root:  .venv/bin/python bench/boot_time.py [--clients bios-virtio,...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "vm-tests")]  # testbed/ and vmbed/

from vmbed.checks import DHCP_KINDS, wait_for_marker  # noqa: E402
from vmbed.config import VmServe, write_config  # noqa: E402
from vmbed.image import TestImage  # noqa: E402
from vmbed.network import TestNetwork  # noqa: E402
from vmbed.qemu import ClientSpec, QemuClient  # noqa: E402

from testbed.kernel import cloud_kernel  # noqa: E402

STEPS = ("dhcp", "tftp", "script", "kernel", "initrd", "image")
KINDS = {
    "bios-virtio": ("bios", "virtio-net-pci"),
    "uefi-virtio": ("uefi", "virtio-net-pci"),
}


def first_times(record: dict, started: float) -> dict[str, float]:
    found: dict[str, float] = {}
    for event in record.get("events", []):
        step = "dhcp" if event["kind"] in DHCP_KINDS else event["kind"]
        if step in STEPS and step not in found:
            found[step] = event["time"] - started
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default=",".join(KINDS), help="comma-separated kinds")
    args = parser.parse_args()
    kinds = args.clients.split(",")
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        print(f"boot_time: unknown client kind {unknown[0]!r} (use {', '.join(KINDS)})",
              file=sys.stderr)  # fmt: skip
        return 2
    with tempfile.TemporaryDirectory(prefix="netboot-bench-") as tmp:
        work = Path(tmp)
        kernel = cloud_kernel()
        image = TestImage(work / "root", work / "base", "bench", work / "image.log")
        image.root.mkdir()
        t0 = time.monotonic()
        image.build(kernel.root, kernel.version)
        print(f"image build: {time.monotonic() - t0:.1f} s")
        net = TestNetwork(work / "lan").create()
        server = None
        try:
            config = write_config(work / "netboot.toml", default_image="bench",
                                  kernel_params="console=ttyS0")  # fmt: skip
            server = VmServe(net, image.root, config, work / "server.log").start(timeout=30)
            print(f"{'client':<12}" + "".join(f"{s:>8}" for s in (*STEPS, "init")))
            for number, kind in enumerate(kinds):
                firmware, nic = KINDS[kind]
                spec = ClientSpec(firmware, nic, f"52:54:00:be:00:{number:02x}")
                client = QemuClient(net, spec, work, kind)
                wall = time.time()
                client.start()
                try:
                    wait_for_marker(client, 300)
                    init = client.elapsed()
                finally:
                    client.stop()
                times = first_times(server.client(spec.mac) or {}, wall)
                cells = [f"{times[s]:8.1f}" if s in times else f"{'-':>8}" for s in STEPS]
                print(f"{kind:<12}" + "".join(cells) + f"{init:8.1f}")
        finally:
            if server is not None:
                server.stop()
            net.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
