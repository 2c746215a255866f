"""A version a client booted over NFS in place is never pruned (issue 12, LTSP issue 928).

The client reads its root squashfs from the NFS export for as long as it runs; pruning its
version while it runs leaves it with a stale handle. The server records the version each
client fetched (ROOT/images/NAME/.in-use) and `netboot image` keeps the versions listed
there. Here: a client boots bookworm over NFS in place and reads its whole root device in a
loop, past every cache; keep_versions + 1 new versions are published meanwhile; its
version stays on disk and every read after the publishes succeeds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_nfs import NFS_BOOT_TIMEOUT, NfsBed, nfs_bed  # noqa: F401 (fixture)
from vmbed.config import VmServe, running, write_config
from vmbed.distro import bookworm_chroot
from vmbed.image import TestImage
from vmbed.run import SERIAL_CONSOLE, VmRun

NAME = "bookworm-inuse"
KEEP = 1

# reads its root over and over: every line says whether reading it failed
READER = r"""#!/bin/sh
loop=$(awk '$2 == "/run/netboot/ro" { print $1 }' /proc/mounts)
backing=$(cat "/sys/block/${loop#/dev/}/loop/backing_file")
i=0
while [ $i -lt 2000 ]; do
    i=$((i + 1))
    # drop only the squashfs's cached pages (drop_caches would also evict the NFS id
    # mapper's helper, whose upcall then waits on this very loop device), then read the
    # whole device past its cache: every block comes from the NFS server again
    dd if="$backing" iflag=nocache count=0 2>/dev/null
    if dd if="$loop" of=/dev/null bs=1M iflag=direct 2>/tmp/nbtest-err; then errs=0; else errs=1; fi
    squash=$(dmesg | grep -c -i -e 'squashfs error' -e 'stale' -e 'I/O error')
    echo "NBTEST-READ n=$i errs=$errs squash=$squash" > /dev/ttyS0
    sleep 2
done
"""
READ_RE = r"NBTEST-READ n=(\d+) errs=(\d+) squash=(\d+)"


def run_netboot(log: Path, *argv: str) -> str:
    """`python -m netboot ARGV`, its output appended to the log and returned."""
    result = subprocess.run([sys.executable, "-m", "netboot", *argv], capture_output=True,
                            text=True, timeout=1800)  # fmt: skip
    with open(log, "a") as out:
        out.write(result.stdout + result.stderr)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stderr


@pytest.fixture(scope="module")
def reader_image(vm_workdir: Path, test_image: TestImage) -> TestImage:
    """bookworm as `bookworm-inuse`, its report script replaced by the reader."""
    chroot = bookworm_chroot(test_image.log)
    base, scripts = vm_workdir / "inuse-base", vm_workdir / "inuse-reader"
    for directory in (base, scripts):
        directory.mkdir(exist_ok=True)
    if not (base / NAME).is_symlink():
        (base / NAME).symlink_to(chroot)
    (scripts / "nbtest-report").write_text(READER)
    (scripts / "nbtest-report").chmod(0o755)
    image = TestImage(test_image.root, base, NAME, test_image.log)
    run_netboot(test_image.log, *image_args(image, vm_workdir))
    run_netboot(test_image.log, "initrd", "--root", str(test_image.root))
    return image


def image_args(image: TestImage, workdir: Path) -> list[str]:
    config = workdir / "inuse-build.toml"
    config.write_text(f"[image]\nkeep_versions = {KEEP}\n")
    source = f"{NAME},,{workdir / 'inuse-reader'},subdir=usr/local/sbin"
    return ["image", "--config", str(config), "--root", str(image.root),
            "--base-dir", str(image.base_dir), "-i", "", source]  # fmt: skip


@pytest.fixture
def nfs_in_place(nfs_bed: NfsBed, reader_image: TestImage) -> Iterator[VmServe]:  # noqa: F811
    workdir = nfs_bed.net.workdir
    config = write_config(workdir / "netboot-inuse.toml", default_image=NAME,
                          kernel_params=SERIAL_CONSOLE,
                          extra='method = "nfs"\nto_ram = false\n')  # fmt: skip
    server = VmServe(nfs_bed.net, reader_image.root, config, workdir / "server-inuse.log")
    with running(server):
        yield server


@pytest.mark.vm_full
def test_version_in_use_over_nfs_is_not_pruned(
    vm: VmRun, nfs_in_place: VmServe, reader_image: TestImage, vm_workdir: Path
) -> None:
    booted = reader_image.current()
    client = vm.boot(nfs_in_place, "bios", "virtio-net-pci", memory_mb=1536, name="inuse")
    first = client.wait_for(READ_RE, NFS_BOOT_TIMEOUT)
    assert first.group(2) == "0", first.group(0)
    errors_at_boot = first.group(3)  # kernel I/O error lines before the publishes
    cmdline = client.text().split("Command line:", 1)[-1].splitlines()[0]
    assert f"netboot.version={booted.version}" in cmdline and "netboot.toram=0" in cmdline

    in_use = reader_image.root / "images" / NAME / ".in-use"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and booted.version not in read_json(in_use):
        time.sleep(1)
    assert booted.version in read_json(in_use), "the server did not record the version"

    outputs = [run_netboot(reader_image.log, *image_args(reader_image, vm_workdir))
               for _ in range(KEEP + 1)]  # fmt: skip
    versions = sorted(p.name for p in (reader_image.root / "images" / NAME / "versions").iterdir())
    assert booted.version in versions, versions
    assert len(versions) == KEEP + 2  # current (the newest KEEP), previous, the booted one
    assert f"kept old versions clients still use: {booted.version}" in outputs[-1]

    after = len(client.text())
    for _ in range(2):  # two full reads of its root after the publishes
        line = client.wait_for(READ_RE, 600, after=after)
        assert line.group(2) == "0", line.group(0)
        assert line.group(3) == errors_at_boot, f"squashfs/NFS errors: {line.group(0)}"
        after = line.end()
    client.stop()


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
