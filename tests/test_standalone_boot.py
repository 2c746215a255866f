"""The standalone initramfs boots for real: QEMU (TCG) with Debian's cloud kernel in a
namespace of its own, DHCP from dnsmasq, the squashfs from a plain HTTP server.

The image is a tiny busybox tree whose /sbin/init prints marker lines (its cmdline, the
root filesystem type, the settings applied) and powers off, so a pass proves the chain
standalone /init -> fetch -> verify -> loop + overlay -> settings -> switch_root.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from netboot.image.standalone import build_standalone
from testbed.kernel import KernelTree, cloud_kernel
from testbed.netns import Namespace

pytestmark = pytest.mark.vm

SERVER_IP = "10.233.0.1"
HTTP_PORT = 8089
MAC = "52:54:00:4e:42:01"
ROOT_HASH = "$6$saltsalt$Q9cQx7d1C0ZgB2tM/pkjw8X1uJ3oJzJrj1w1"
BOOT_TIMEOUT = 150

MARKER_INIT = """#!/bin/sh
echo "NETBOOT-MARKER cmdline=$(cat /proc/cmdline)"
echo "NETBOOT-MARKER rootfs=$(awk '$2 == "/" { t = $3 } END { print t }' /proc/mounts)"
echo "NETBOOT-MARKER hostname=$(cat /etc/hostname) shadow=$(grep '^root:' /etc/shadow)"
echo "NETBOOT-MARKER hosts=$(grep '^127.0.1.1' /etc/hosts)"
echo "NETBOOT-MARKER end"
poweroff -f
"""


@pytest.fixture(scope="module")
def kernel() -> KernelTree:
    return cloud_kernel()


@pytest.fixture(scope="module")
def standalone(kernel: KernelTree, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("standalone") / "standalone.img"
    build_standalone(kernel.root, kernel.version, output)
    return output


@pytest.fixture(scope="module")
def www(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The served directory: root.squashfs of a busybox tree, and a client settings file."""
    base = tmp_path_factory.mktemp("image")
    tree = base / "tree"
    for directory in ("bin", "sbin", "etc", "proc", "sys", "dev", "run", "tmp"):
        (tree / directory).mkdir(parents=True)
    shutil.copy2("/bin/busybox", tree / "bin/busybox")
    for applet in ("sh", "cat", "awk", "grep", "poweroff"):
        (tree / "bin" / applet).symlink_to("busybox")
    (tree / "sbin/init").write_text(MARKER_INIT)
    (tree / "sbin/init").chmod(0o755)
    (tree / "etc/hostname").write_text("image-default\n")
    (tree / "etc/hosts").write_text("127.0.0.1\tlocalhost\n127.0.1.1\timage-default\n")
    (tree / "etc/shadow").write_text("root:*:19000:0:99999:7:::\ndaemon:*:19000::::::\n")
    (tree / "etc/shadow").chmod(0o640)
    served = base / "www"
    served.mkdir()
    subprocess.run(
        ["mksquashfs", str(tree), str(served / "root.squashfs"), "-comp", "gzip", "-noappend",
         "-quiet", "-all-root"],
        check=True, capture_output=True,
    )  # fmt: skip
    (served / "settings.sh").write_text(
        f"NETBOOT_HOSTNAME='testpc'\nNETBOOT_ROOT_PASSWORD_HASH='{ROOT_HASH}'\n"
    )
    return served


@dataclass
class BootNet:
    ns: Namespace
    tap: str
    workdir: Path


@pytest.fixture
def bootnet(www: Path, tmp_path: Path) -> Iterator[BootNet]:
    """A namespace whose tap device is the server side of the client's NIC: dnsmasq (DHCP
    only) and an HTTP server listen on it; QEMU attaches to it from inside."""
    ns = Namespace("boot")
    tap = "nbtap0"
    procs: list[subprocess.Popen] = []
    try:
        ns.ip("tuntap", "add", "dev", tap, "mode", "tap")
        ns.ip("addr", "add", f"{SERVER_IP}/24", "dev", tap)
        ns.ip("link", "set", tap, "up")
        procs.append(ns.popen(
            "dnsmasq", "--no-daemon", "--port=0", f"--interface={tap}", "--bind-interfaces",
            "--dhcp-range=10.233.0.100,10.233.0.150,1h", f"--dhcp-leasefile={tmp_path}/leases",
            "--conf-file=/dev/null", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))  # fmt: skip
        procs.append(ns.popen(
            "python3", "-m", "http.server", str(HTTP_PORT), "--bind", SERVER_IP,
            "--directory", str(www), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))  # fmt: skip
        url = f"http://{SERVER_IP}:{HTTP_PORT}/settings.sh"
        deadline = time.monotonic() + 10
        while ns.run("curl", "-sf", "-o", "/dev/null", url, check=False).returncode != 0:
            assert time.monotonic() < deadline, "HTTP server in the namespace did not start"
            time.sleep(0.2)
        yield BootNet(ns, tap, tmp_path)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        ns.close()


def boot(net: BootNet, kernel: KernelTree, initrd: Path, append: str, until: str) -> str:
    """Boot QEMU until a console line matches `until` (or it exits); returns the console."""
    log_path = net.workdir / "console.log"
    cmd = net.ns.exec(
        "qemu-system-x86_64", "-accel", "tcg", "-m", "512", "-nographic", "-nodefaults",
        "-serial", "stdio", "-no-reboot", "-kernel", str(kernel.vmlinuz), "-initrd", str(initrd),
        "-append", f"console=ttyS0 {append}",
        "-netdev", f"tap,id=n0,ifname={net.tap},script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=n0,mac={MAC}",
    )  # fmt: skip
    with open(log_path, "wb") as log:
        qemu = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + BOOT_TIMEOUT
            while time.monotonic() < deadline:
                text = log_path.read_text(errors="replace")
                if re.search(until, text) or qemu.poll() is not None:
                    break
                time.sleep(0.5)
        finally:
            qemu.kill()
            qemu.wait()
    return log_path.read_text(errors="replace").replace("\r", "")


def test_standalone_boots_image_over_http(
    bootnet: BootNet, kernel: KernelTree, standalone: Path, www: Path
) -> None:
    squashfs = www / "root.squashfs"
    base = f"http://{SERVER_IP}:{HTTP_PORT}"
    append = (
        f"BOOTIF=01-{MAC.replace(':', '-')} netboot.url={base}/root.squashfs "
        f"netboot.size={squashfs.stat().st_size} "
        f"netboot.sha256={hashlib.sha256(squashfs.read_bytes()).hexdigest()} "
        f"netboot.settings={base}/settings.sh"
    )
    console = boot(bootnet, kernel, standalone, append, r"NETBOOT-MARKER end|netboot: ERROR")
    assert "netboot: ERROR" not in console, console[-3000:]
    assert "netboot: network up: eth0 10.233.0." in console, console[-3000:]
    assert "netboot: image fetched and verified" in console, console[-3000:]
    markers = dict(
        line.split(" ", 1)[1].split("=", 1)
        for line in console.splitlines()
        if line.startswith("NETBOOT-MARKER ") and "=" in line
    )
    assert "netboot.url=" in markers.get("cmdline", ""), console[-3000:]
    assert markers.get("rootfs") == "overlay", console[-3000:]
    assert markers.get("hostname", "").startswith("testpc shadow=root:"), console[-3000:]
    assert f"root:{ROOT_HASH}:19000:" in markers["hostname"]
    assert markers.get("hosts") == "127.0.1.1\ttestpc"


def test_standalone_wrong_sha256_fails_clearly(
    bootnet: BootNet, kernel: KernelTree, standalone: Path, www: Path
) -> None:
    wrong = "0" * 64
    # static address: also covers the ip= fallback of the standalone init
    append = (
        f"ip=10.233.0.77::{SERVER_IP}:255.255.255.0 "
        f"netboot.url=http://{SERVER_IP}:{HTTP_PORT}/root.squashfs netboot.sha256={wrong}"
    )
    console = boot(bootnet, kernel, standalone, append, r"netboot: ERROR.*|NETBOOT-MARKER end")
    assert "netboot: static address 10.233.0.77 on eth0" in console, console[-3000:]
    errors = [line for line in console.splitlines() if line.startswith("netboot: ERROR")]
    assert errors, console[-3000:]
    assert f"sha256 mismatch for http://{SERVER_IP}:{HTTP_PORT}/root.squashfs" in errors[0]
    assert f"expected {wrong}" in errors[0]
    assert "NETBOOT-MARKER" not in console
