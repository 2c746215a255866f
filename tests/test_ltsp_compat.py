"""LTSP-compatible mode: an existing LTSP tree (/srv/ltsp, /srv/tftp/ltsp) is booted with the
seed's chain: ltsp.img plus the image's initrd.img, root over NFS, ltsp.image=images/NAME.img."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from testbed.lan import SERVER_IF, SERVER_IP, Lan
from testbed.serve import ServeProcess


def make_ltsp_tree(tmp: Path) -> tuple[Path, Path]:
    ltsp = tmp / "ltsp"
    tftp = tmp / "tftp-ltsp"
    (ltsp / "images").mkdir(parents=True)
    (ltsp / "images" / "focal.img").write_bytes(b"squashfs")
    (tftp / "focal").mkdir(parents=True)
    (tftp / "focal" / "vmlinuz").write_bytes(b"kernel")
    (tftp / "focal" / "initrd.img").write_bytes(b"initrd")
    (tftp / "ltsp.img").write_bytes(b"ltsp addon")
    # an image without a kernel is not offered
    (ltsp / "images" / "broken.img").write_bytes(b"squashfs")
    return ltsp, tftp


def config_for(tmp: Path, ltsp: Path, tftp: Path) -> Path:
    path = tmp / "netboot.toml"
    path.write_text(
        f"[server]\nltsp_compat = true\nltsp_root = '{ltsp}'\nltsp_tftp_root = '{tftp}'\n"
        "[boot]\nmenu_timeout = 0\ndefault_image = 'ltsp-focal'\n"
    )
    return path


def test_ipxe_script_is_the_seed_chain(tmp_path: Path) -> None:
    ltsp, tftp = make_ltsp_tree(tmp_path)
    config = config_for(tmp_path, ltsp, tftp)
    script = subprocess.run(
        [
            sys.executable,
            "-m",
            "netboot",
            "ipxe",
            "--config",
            str(config),
            "--root",
            str(tmp_path / "srv"),
            "--address",
            "192.0.2.1",
            "--platform",
            "efi",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "item img-ltsp-focal focal (LTSP)" in script
    assert "broken" not in script
    assert "goto img-ltsp-focal" in script  # menu_timeout 0: boot the default at once
    assert (
        "kernel http://192.0.2.1/ltsp/focal/vmlinuz initrd=ltsp.img initrd=initrd.img "
        f"root=/dev/nfs nfsroot=192.0.2.1:{ltsp} ltsp.image=images/focal.img loop.max_part=9 "
        "BOOTIF=01-${mac:hexhyp}"
    ) in script
    assert "initrd --name ltsp.img http://192.0.2.1/ltsp/ltsp.img" in script
    assert "initrd --name initrd.img http://192.0.2.1/ltsp/focal/initrd.img" in script


@pytest.mark.netns
def test_server_serves_the_ltsp_tftp_tree_under_ltsp(lan: Lan, tmp_path: Path) -> None:
    ltsp, tftp = make_ltsp_tree(tmp_path)
    config = config_for(tmp_path, ltsp, tftp)
    lan.serve.stop()
    serve = ServeProcess(
        lan.server_ns,
        lan.root,
        interface=SERVER_IF,
        address=SERVER_IP,
        config=config,
        log_path=tmp_path / "serve.log",
    ).start()
    try:
        got = serve.curl("/ltsp/focal/initrd.img", "-f", ns=lan.client_ns)
        assert got.stdout == "initrd"
        assert serve.curl("/ltsp/ltsp.img", "-f", ns=lan.client_ns).stdout == "ltsp addon"
        refused = serve.curl(
            "/ltsp/../../etc/passwd",
            "--path-as-is",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            ns=lan.client_ns,
        )
        assert refused.stdout in ("403", "404")
        script = serve.curl(
            "/boot.ipxe?mac=52-54-00-00-00-31&platform=pcbios", "-f", ns=lan.client_ns
        ).stdout
        assert f"nfsroot={SERVER_IP}:{ltsp}" in script
        record = serve.api("/api/clients/52:54:00:00:00:31")
        assert [e["kind"] for e in record["events"]][:1] == ["script"]
    finally:
        serve.stop()
        lan.serve.start()


def test_site_wide_menu_timeout_of_ltsp_ipxe(tmp_path: Path) -> None:
    """`ltsp ipxe` writes ltsp.conf's MENU_TIMEOUT (else 5000) under `:start`, outside any
    `:MAC` section: it is the menu timeout of every client without one of its own."""
    ltsp, tftp = make_ltsp_tree(tmp_path)
    template = Path("/usr/share/ltsp/server/ipxe/ltsp.ipxe")
    site = (
        template.read_text()
        if template.is_file()
        else "goto ${mac} || goto start\n:start\nisset ${menu-timeout} || set menu-timeout 5000\n"
    )
    site = site.replace("|| set menu-timeout 5000", "|| set menu-timeout 7000")
    site = site.replace(
        ":61:6c:6b:69:73:67", ":52:54:00:00:00:41\nset menu-timeout 2000\ngoto start"
    )
    (tftp / "ltsp.ipxe").write_text(site)
    config = config_for(tmp_path, ltsp, tftp)  # boot.menu_timeout = 0
    site_wide = ipxe_script(tmp_path, config, "52:54:00:00:00:40")
    assert "|| set menu-timeout 7000\n" in site_wide
    own = ipxe_script(tmp_path, config, "52:54:00:00:00:41")
    assert "|| set menu-timeout 2000\n" in own  # its own section's
    (tftp / "ltsp.ipxe").unlink()
    assert "goto img-ltsp-focal" in ipxe_script(tmp_path, config, "52:54:00:00:00:40")


def test_ltsp_chroots_are_offered_over_nfs(tmp_path: Path) -> None:
    """LTSP's `:roots` method: a chroot ltsp_root/NAME (it has sbin/init) is the NFS root
    itself, booted with the kernel `ltsp kernel NAME` copied. It is `ltsp-NAME`, or
    `ltsp-r_NAME` (LTSP's item name) when an image NAME exists too."""
    ltsp, tftp = make_ltsp_tree(tmp_path)
    for name in ("bookworm", "focal", "nokernel"):
        (ltsp / name / "usr/sbin").mkdir(parents=True)
        (ltsp / name / "sbin").symlink_to("usr/sbin")
        (ltsp / name / "usr/sbin/init").symlink_to("../lib/systemd/systemd")  # dangling here
    (ltsp / "notachroot").mkdir()
    (tftp / "bookworm").mkdir()
    (tftp / "bookworm" / "vmlinuz").write_bytes(b"kernel")
    (tftp / "bookworm" / "initrd.img").write_bytes(b"initrd")
    (tftp / "ltsp.ipxe").write_text(
        ":52:54:00:00:00:42\nset img r_bookworm\ngoto start\n"
        ":52:54:00:00:00:43\nset img r_focal\ngoto start\n"
    )
    config = config_for(tmp_path, ltsp, tftp)
    script = ipxe_script(tmp_path, config, "52:54:00:00:00:42")
    assert "item img-ltsp-bookworm bookworm (LTSP chroot)" in script
    assert "item img-ltsp-focal focal (LTSP)" in script
    assert "item img-ltsp-r_focal focal (LTSP chroot)" in script
    assert "nokernel" not in script and "notachroot" not in script
    assert "goto img-ltsp-bookworm" in script  # the client's `set img r_bookworm`
    assert (
        "kernel http://192.0.2.1/ltsp/bookworm/vmlinuz initrd=ltsp.img initrd=initrd.img "
        f"root=/dev/nfs nfsroot=192.0.2.1:{ltsp}/bookworm BOOTIF=01-${{mac:hexhyp}}"
    ) in script
    assert "initrd --name initrd.img http://192.0.2.1/ltsp/bookworm/initrd.img" in script
    # the chroot beside an image of its name: same kernel, its own directory as the root
    script = ipxe_script(tmp_path, config, "52:54:00:00:00:43")
    assert "goto img-ltsp-r_focal" in script
    assert (
        "kernel http://192.0.2.1/ltsp/focal/vmlinuz initrd=ltsp.img initrd=initrd.img "
        f"root=/dev/nfs nfsroot=192.0.2.1:{ltsp}/focal BOOTIF=01-${{mac:hexhyp}}"
    ) in script


def ipxe_script(tmp: Path, config: Path, mac: str) -> str:
    """`netboot ipxe`: the BIOS boot script of `mac` from this config."""
    argv = ["ipxe", "--config", str(config), "--root", str(tmp / "srv"),
            "--address", "192.0.2.1", "--mac", mac]  # fmt: skip
    return subprocess.run([sys.executable, "-m", "netboot", *argv], capture_output=True,
                          text=True, check=True).stdout  # fmt: skip
