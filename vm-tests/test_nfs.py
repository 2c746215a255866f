"""The NFS boot method (LTSP's chain, make vm-test-full): the debootstrapped Debian bookworm
with its own initramfs-tools initrd plus netboot's add-on, `[boot] method = "nfs"`, its
squashfs read from an NFS export of the served root (nfs-ganesha, NFSv4, in the server
namespace) either in place (`to_ram = false`) or copied to RAM first (`to_ram = true`,
LTSP's IMAGE_TO_RAM), to systemd's multi-user.target.

The image is the cached bookworm chroot published as `bookworm-nfs` with its report script
replaced (a second source part over /usr/local/sbin): it also says which loop device holds
the root squashfs, that device's backing file and what is mounted at /run/netboot/nfs, as
seen from the booted system once the initramfs' /run has moved into it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from vmbed.checks import kinds, parse_cmdline
from vmbed.config import VmServe, running, write_config
from vmbed.distro import bookworm_chroot
from vmbed.image import TestImage
from vmbed.network import TestNetwork, network
from vmbed.nfs import GaneshaServer, available
from vmbed.run import SERIAL_CONSOLE, VmRun, new_mac

NFS_IMAGE_NAME = "bookworm-nfs"
NFS_BOOT_TIMEOUT = 1200  # systemd under TCG, the root read over NFS on demand
RUN_NETBOOT = "/run/netboot"  # the initramfs's /run/netboot, moved into the system

REPORT = r"""#!/bin/sh
# netboot vm-test (NFS method): what booted and where its squashfs lives, then power off.
target=$(systemctl is-active multi-user.target)
rootfs=$(awk '$2 == "/" { fs = $3 } END { print fs }' /proc/mounts)
stamp=$(cat /etc/netboot-test-stamp)
loop=$(awk '$2 == "/run/netboot/ro" { print $1 }' /proc/mounts)
backing=$(cat "/sys/block/${loop#/dev/}/loop/backing_file" 2>/dev/null)
nfs=$(awk '$2 == "/run/netboot/nfs" { print $3 "," $1 }' /proc/mounts)
id=$(cat /sys/module/nfs/parameters/nfs4_unique_id 2>/dev/null)
echo "NBTEST-NFS target=$target rootfs=$rootfs stamp=$stamp loop=${loop:-none}" \
    "backing=${backing:-none} nfs=${nfs:-none} id=${id:-none}" > /dev/ttyS0
systemctl --no-block poweroff
"""

REPORT_RE = re.compile(
    r"NBTEST-NFS target=(?P<target>\S*) rootfs=(?P<rootfs>\S*) stamp=(?P<stamp>\S*) "
    r"loop=(?P<loop>\S*) backing=(?P<backing>\S*) nfs=(?P<nfs>\S*) id=(?P<id>\S*)"
)


@dataclass(frozen=True)
class NfsBed:
    net: TestNetwork
    ganesha: GaneshaServer


@dataclass(frozen=True)
class NfsServer:
    server: VmServe
    ganesha: GaneshaServer
    to_ram: bool


@pytest.fixture(scope="module")
def nfs_image(vm_workdir: Path, test_image: TestImage) -> TestImage:
    """The bookworm chroot as `bookworm-nfs` with the NFS report script, and the add-on."""
    log = test_image.log
    chroot = bookworm_chroot(log)  # debootstrap once (cached), the unit and a new stamp
    base = vm_workdir / "nfs-base"
    report_dir = vm_workdir / "nfs-report"
    for directory in (base, report_dir):
        directory.mkdir(exist_ok=True)
    link = base / NFS_IMAGE_NAME
    if not link.is_symlink():
        link.symlink_to(chroot)
    script = report_dir / "nbtest-report"
    script.write_text(REPORT)
    script.chmod(0o755)
    source = f"{NFS_IMAGE_NAME},,{report_dir},subdir=usr/local/sbin"
    with open(log, "ab") as out:
        for argv in (
            ["image", "--root", str(test_image.root), "--base-dir", str(base), "-i", "", source],
            ["initrd", "--root", str(test_image.root)],  # the add-on, with the NFS modules
        ):
            subprocess.run([sys.executable, "-m", "netboot", *argv], stdout=out,
                           stderr=subprocess.STDOUT, check=True, timeout=900)  # fmt: skip
    image = TestImage(test_image.root, base, NFS_IMAGE_NAME, log)
    assert image.current().directory.joinpath("initrd.img").is_file(), "no initrd.img published"
    return image


@pytest.fixture(scope="module")
def nfs_bed(vm_workdir: Path, test_image: TestImage) -> Iterator[NfsBed]:
    """A LAN of its own (the NFS method is a site-wide `[boot]` setting) with the site's
    DHCP server, and nfs-ganesha exporting the served root read-only."""
    if not available():
        raise RuntimeError("the NFS test needs nfs-ganesha and nfs-ganesha-vfs "
                           "(./bootstrap.sh setup)")  # fmt: skip
    with network(vm_workdir / "lan-nfs", foreign_dhcp=True) as net:
        ganesha = GaneshaServer(net, test_image.root, net.workdir / "ganesha")
        try:
            ganesha.start()
            yield NfsBed(net, ganesha)
        finally:
            ganesha.stop()


@pytest.fixture(params=[False, True], ids=["in-place", "to-ram"])
def nfs_server(
    request: pytest.FixtureRequest, nfs_bed: NfsBed, nfs_image: TestImage
) -> Iterator[NfsServer]:
    """`netboot serve --dhcp proxy` with `[boot] method = "nfs"`; nfs_server and nfs_root
    are left to their defaults: this server's address and its served root."""
    to_ram: bool = request.param
    workdir = nfs_bed.net.workdir
    config = write_config(
        workdir / f"netboot-{request.node.callspec.id}.toml",
        default_image=NFS_IMAGE_NAME,
        kernel_params=SERIAL_CONSOLE,
        # no [clients] tables: these lines still belong to [boot]
        extra=f'method = "nfs"\nto_ram = {"true" if to_ram else "false"}\n',
    )
    server = VmServe(nfs_bed.net, nfs_image.root, config, workdir / "server.log")
    with running(server):
        yield NfsServer(server, nfs_bed.ganesha, to_ram)


@pytest.mark.vm_full
def test_debian_boots_over_nfs(vm: VmRun, nfs_server: NfsServer, nfs_image: TestImage) -> None:
    server, to_ram = nfs_server.server, nfs_server.to_ram
    vm.logs["ganesha.log"] = nfs_server.ganesha.log
    published = nfs_image.current()
    export = f"{server.net.server_ip}:{nfs_image.root}"
    path = f"images/{NFS_IMAGE_NAME}/versions/{published.version}/root.squashfs"
    mac = new_mac()
    client = vm.boot(server, "bios", "virtio-net-pci", mac=mac, memory_mb=1536,
                     name=f"bookworm-nfs-{'ram' if to_ram else 'inplace'}")  # fmt: skip
    match = client.wait_for(REPORT_RE.pattern, NFS_BOOT_TIMEOUT)
    report = REPORT_RE.search(match.group(0))
    assert report is not None
    print(f"bookworm over NFS (to_ram={to_ram}): power-on to multi-user.target "
          f"{client.elapsed():.0f} s")  # fmt: skip
    console = client.text()
    assert report["target"] == "active", report.group(0)
    assert report["rootfs"] == "overlay", report.group(0)
    assert report["stamp"] == published.stamp, "booted another version's root"

    cmdline = parse_cmdline(console.split("Command line:", 1)[-1].splitlines()[0])
    assert cmdline.get("netboot.method") == "nfs", cmdline
    assert cmdline.get("netboot.nfs") == export, cmdline
    assert cmdline.get("netboot.path") == path, cmdline
    assert cmdline.get("netboot.toram") == ("1" if to_ram else "0"), cmdline
    assert cmdline.get("netboot.version") == published.version, cmdline
    assert f"netboot: mounted {export} over NFSv4" in console, "no NFSv4 mount in the initramfs"

    # NFSv4.1+ names clients by host name, "(none)" in the initramfs: ours is unique
    assert report["id"] == f"netboot-{mac}", report.group(0)
    assert report["loop"].startswith("/dev/loop"), report.group(0)
    if to_ram:
        # copied from the export, checked (size and sha256), the export unmounted again
        assert f"netboot: copying {path} to RAM" in console
        assert "netboot: checking sha256" in console
        assert report["backing"] == f"{RUN_NETBOOT}/ram/root.squashfs", report.group(0)
        assert report["nfs"] == "none", report.group(0)
    else:
        # the loop device reads the squashfs from the export, which is still mounted
        assert report["backing"] == f"{RUN_NETBOOT}/nfs/{path}", report.group(0)
        assert report["nfs"] == f"nfs4,{export}", report.group(0)
    assert client.wait_exit(120) == 0

    # kernel, initrd and add-on came over HTTP; the squashfs did not
    record = server.client(mac)
    seen = kinds(record)
    for step in ("script", "kernel", "initrd", "addon"):
        assert step in seen, f"no {step!r} step in the record of {mac}: {seen}"
    assert "image" not in seen, f"the squashfs was fetched over HTTP: {seen}"
