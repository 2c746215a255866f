"""An LTSP site moving to netboot (make vm-test-full): a Debian bookworm image made by LTSP's
own tools (`ltsp image/kernel/initrd/ipxe`, vmbed/ltsp.py), served by `netboot serve` in
LTSP compat mode with the squashfs on NFSv3 as LTSP clients mount it (initramfs-tools'
nfsmount, through the portmapper: nfs-ganesha and rpcbind in the server namespace), booted
by a BIOS client to systemd's multi-user.target through LTSP's own init; and the chroot
the image was made from, booted over NFS as LTSP's roots method does.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from vmbed.checks import boot_to_report, kinds, parse_cmdline
from vmbed.config import VmServe, running, toml_string, write_config
from vmbed.image import STAMP_FILE
from vmbed.ltsp import IMAGE_NAME, REPORT_RE, LtspSite, build_site
from vmbed.network import network
from vmbed.nfs import GaneshaServer, available
from vmbed.run import SERIAL_CONSOLE, VmRun, new_mac

LTSP_BOOT_TIMEOUT = 900  # systemd under TCG, a generic kernel, the squashfs read over NFS
LTSP_ENTRY = f"ltsp-{IMAGE_NAME}"
CHROOT_ENTRY = f"ltsp-r_{IMAGE_NAME}"  # the chroot beside the image of its name
CHROOT_MAC = "52:54:00:4e:42:c1"  # sent to CHROOT_ENTRY by its [clients] section


@pytest.fixture(scope="module")
def ltsp_site(vm_workdir: Path) -> LtspSite:
    return build_site(vm_workdir / "ltsp-tftp", vm_workdir / "ltsp-build.log")


@pytest.fixture(scope="module")
def ltsp_server(vm_workdir: Path, ltsp_site: LtspSite) -> Iterator[tuple[VmServe, GaneshaServer]]:
    """A LAN of its own with the site's DHCP server, nfs-ganesha (NFSv3 and rpcbind)
    exporting LTSP's BASE_DIR, and `netboot serve --dhcp proxy` in compat mode."""
    if not available():
        raise RuntimeError("the LTSP test needs nfs-ganesha, nfs-ganesha-vfs and rpcbind "
                           "(./bootstrap.sh setup)")  # fmt: skip
    served = vm_workdir / "ltsp-served"  # netboot's own root: no images of its own
    served.mkdir(exist_ok=True)
    with network(vm_workdir / "lan-ltsp", foreign_dhcp=True) as net:
        ganesha = GaneshaServer(net, ltsp_site.base_dir, net.workdir / "ganesha", nfsv3=True)
        config = write_config(
            net.workdir / "netboot.toml",
            default_image=LTSP_ENTRY,
            kernel_params=SERIAL_CONSOLE,
            clients={CHROOT_MAC: {"image": CHROOT_ENTRY}},
            extra=(
                "\n[server]\nltsp_compat = true\n"
                f"ltsp_root = {toml_string(str(ltsp_site.base_dir))}\n"
                f"ltsp_tftp_root = {toml_string(str(ltsp_site.tftp_dir))}\n"
            ),
        )
        try:
            ganesha.start()
            with running(VmServe(net, served, config, net.workdir / "server.log")) as server:
                yield server, ganesha
        finally:
            ganesha.stop()


@pytest.mark.vm_full
@pytest.mark.parametrize("method", ["image", "chroot"])
def test_ltsp_site_boots_in_compat_mode(
    vm: VmRun, ltsp_site: LtspSite, ltsp_server: tuple[VmServe, GaneshaServer], method: str
) -> None:
    """`image`: LTSP's images method, images/bookworm.img loop-mounted from the NFS root;
    `chroot`: LTSP's roots method, the chroot bookworm/ itself is the NFS root (entry
    ltsp-r_bookworm: the image took ltsp-bookworm), chosen by the client's `[clients]`."""
    server, ganesha = ltsp_server
    vm.logs["ganesha.log"] = ganesha.log
    export = f"{server.net.server_ip}:{ltsp_site.base_dir}"

    # the menu timeout is ltsp.ipxe's site-wide one (LTSP's 5000), not boot.menu_timeout 0
    probe = server.curl("/boot.ipxe?mac=52-54-00-4e-42-ff&platform=pcbios", "-f").stdout
    assert "|| set menu-timeout 5000\n" in probe, probe
    assert f"item img-{LTSP_ENTRY} {IMAGE_NAME} (LTSP)\n" in probe, probe
    assert f"item img-{CHROOT_ENTRY} {IMAGE_NAME} (LTSP chroot)\n" in probe, probe

    chroot = method == "chroot"
    mac = CHROOT_MAC if chroot else new_mac()
    # image: the stamp went into the chroot before `ltsp image`, read back from the squashfs
    stamp = (ltsp_site.base_dir / IMAGE_NAME / STAMP_FILE).read_text().strip()
    client, report = boot_to_report(vm, server, REPORT_RE, stamp if chroot else ltsp_site.stamp,
                                    mac=mac, name=f"ltsp-{method}",
                                    timeout=LTSP_BOOT_TIMEOUT)  # fmt: skip
    console = client.text()
    # LTSP's initramfs hook put its overlay on the NFS root (NFSv3: initramfs-tools' nfsmount)
    assert "Running /sbin/ltsp initrd-bottom" in console
    assert report["nfs"] == "v3", report.group(0)
    if chroot:
        assert (report["loop"], report["backing"]) == ("none", "none"), report.group(0)
    else:
        assert report["backing"] == f"/root/images/{IMAGE_NAME}.img", report.group(0)
    # LTSP's init ran as PID 1: it made /run/ltsp/client and named the host after its address
    assert report["client"] == "yes", report.group(0)
    address = re.search(r"address: \d+\.\d+\.\d+\.(\d+) ", console)
    assert address is not None, "no IP-Config address on the console"
    assert report["host"] == f"ltsp{address[1]}", report.group(0)

    cmdline = parse_cmdline(console.split("Command line:", 1)[-1].splitlines()[0])
    assert cmdline.get("root") == "/dev/nfs", cmdline
    if chroot:
        assert cmdline.get("nfsroot") == f"{export}/{IMAGE_NAME}", cmdline
        assert "ltsp.image" not in cmdline, cmdline
    else:
        assert cmdline.get("nfsroot") == export, cmdline
        assert cmdline.get("ltsp.image") == f"images/{IMAGE_NAME}.img", cmdline
    assert cmdline.get("BOOTIF") == "01-" + mac.replace(":", "-"), cmdline
    assert client.wait_exit(120) == 0

    # kernel, LTSP's initrd.img and ltsp.img (the add-on) came over HTTP from LTSP's tree
    seen = kinds(server.client(mac))
    for step in ("script", "kernel", "initrd", "addon"):
        assert step in seen, f"no {step!r} step in the record of {mac}: {seen}"
    assert "image" not in seen, f"the root was fetched over HTTP: {seen}"
