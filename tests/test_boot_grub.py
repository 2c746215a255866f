"""The GRUB loader in the boot layer: who is sent shim, the GRUB config rendered from the
same `BootMenu` as the iPXE script, the generated TFTP files, the kernel signature check,
and shim/GRUB placed in the served root. No root, no network."""

from __future__ import annotations

import logging
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from test_boot_policy import MAC, add_binaries, make_config, policy_for, publish

from netboot.boot import ClientFacts, NoAnswer, PxeAnswer, grub, ipxe
from netboot.image.signature import kernel_signed
from netboot.server import prepare_root

SIGNED_GRUB = Path("/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed")
GRUB = {"boot": {"loader": "grub"}}


def add_shim(tmp_path: Path) -> None:
    for chain in (grub.X64, grub.ARM64):
        target = tmp_path / "srv" / chain.shim_path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"shim")


@pytest.mark.parametrize(("arch", "shim"), [(7, "efi/x64/shimx64.efi"),
                                            (9, "efi/x64/shimx64.efi"),
                                            (11, "efi/aa64/shimaa64.efi")])  # fmt: skip
def test_uefi_pxe_gets_shim_with_loader_grub(tmp_path: Path, arch: int, shim: str) -> None:
    add_binaries(tmp_path, "undionly.kpxe", "snponly.efi", "ipxe.efi")
    add_shim(tmp_path)
    answer = policy_for(tmp_path, GRUB).pxe_answer(ClientFacts(MAC, arch=arch))
    assert isinstance(answer, PxeAnswer)
    assert (answer.boot_file, answer.vendor_class, answer.via_http) == (shim, "PXEClient", False)


def test_bios_http_boot_and_ipxe_keep_ipxe_with_loader_grub(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "netboot.boot")
    add_binaries(tmp_path, "undionly.kpxe", "snponly.efi", "ipxe.efi")
    add_shim(tmp_path)
    policy = policy_for(tmp_path, GRUB)
    assert policy.pxe_answer(ClientFacts(MAC, arch=0)).boot_file == "ipxe/undionly.kpxe"
    for _ in range(3):
        http = policy.pxe_answer(ClientFacts(MAC, arch=16))
        assert http.boot_file == f"http://{policy.server_ip}/ipxe/ipxe.efi"
    said = [r for r in caplog.records if "HTTP Boot clients get iPXE" in r.getMessage()]
    assert len(said) == 1, "the HTTP Boot fallback is said once in the log"
    assert policy.pxe_answer(ClientFacts(MAC, arch=7, ipxe=True)).boot_file == policy.script_url


def test_loader_per_client_and_missing_shim(tmp_path: Path) -> None:
    add_binaries(tmp_path, "snponly.efi")
    other = "52:54:00:00:00:02"
    toml = {"clients": {MAC: {"loader": "grub"}}}
    policy = policy_for(tmp_path, toml)
    assert policy.pxe_answer(ClientFacts(other, arch=7)).boot_file == "ipxe/snponly.efi"
    missing = policy.pxe_answer(ClientFacts(MAC, arch=7))
    assert isinstance(missing, NoAnswer) and "shimx64.efi" in missing.reason
    add_shim(tmp_path)
    assert policy.pxe_answer(ClientFacts(MAC, arch=7)).boot_file == "efi/x64/shimx64.efi"
    back = policy_for(tmp_path, {**GRUB, "clients": {MAC: {"loader": "ipxe"}}})
    assert back.pxe_answer(ClientFacts(MAC, arch=7)).boot_file == "ipxe/snponly.efi"


def test_grub_config_is_the_same_decision_as_the_ipxe_script(tmp_path: Path) -> None:
    root = tmp_path / "srv"
    publish(root, "alpha")
    publish(root, "beta")
    toml = {"boot": {"loader": "grub", "menu_timeout": 7, "kernel_params": "quiet"},
            "clients": {MAC: {"image": "beta", "kernel_params": "x='1 2'"}}}  # fmt: skip
    policy = policy_for(tmp_path, toml, port=8080)
    text = policy.tftp_file(f"/grub/clients/{MAC.upper()}.cfg").decode()
    menu = policy.grub_menu(MAC)
    script = ipxe.menu_script(policy.menu(ClientFacts(MAC, ipxe=True, platform="efi")))
    assert "set timeout=7" in text and "set default=img-beta" in text
    assert "--id img-alpha" in text and "--id img-beta" in text and "--id local" in text
    assert "${" not in text, "an iPXE variable left for GRUB to expand"
    assert "'BOOTIF=01-52-54-00-00-00-01'" in text
    assert f"'netboot.settings=http://{policy.server_ip}:8080/clients/{MAC}'" in text
    beta = next(e for e in menu.entries if e.name == "beta")
    assert f"linux '{beta.kernel}' " in text
    assert "initrd '" + beta.initrds[0][1] + "'" in text
    # the same kernel command line as iPXE's, with the MAC filled in, one GRUB word each
    assert menu.cmdline(beta) in script
    grub_line = next(line for line in text.splitlines() if "netboot.image=beta" in line)
    resolved = menu.cmdline(beta).replace("${mac:hexhyp}", "52-54-00-00-00-01")
    assert shlex.split(grub_line)[2:] == resolved.replace("${mac}", MAC).split()
    # x='1 2' is two words with one quote each, in both entries: each quote escaped
    assert text.count("'\\''") == 4, text


@pytest.mark.skipif(shutil.which("grub-script-check") is None, reason="needs grub-common")
def test_rendered_configs_pass_grub_script_check(tmp_path: Path) -> None:
    publish(tmp_path / "srv", "alpha")
    policy = policy_for(tmp_path, {"boot": {"kernel_params": "a=$x b='c'"}})
    for name in ("grub/grub.cfg", f"grub/clients/{MAC}.cfg"):
        text = policy.tftp_file(name)
        assert text is not None
        result = subprocess.run(["grub-script-check"], input=text, capture_output=True)
        assert result.returncode == 0, (name, result.stderr)


def test_only_grub_paths_are_virtual(tmp_path: Path) -> None:
    policy = policy_for(tmp_path)
    assert b"$prefix/clients/$net_default_mac.cfg" in (policy.tftp_file("//grub/grub.cfg") or b"")
    for name in ("grub/clients/not-a-mac.cfg", "grub/clients/../x.cfg", "ipxe/snponly.efi",
                 "grub/clients/52:54:00:00:00:01", "grub/other.cfg"):  # fmt: skip
        assert policy.tftp_file(name) is None, name


def test_prepare_root_places_shim_and_grub_when_the_loader_is_grub(tmp_path: Path) -> None:
    sources = tmp_path / "src"
    sources.mkdir()
    for name in ("shim", "grub"):
        (sources / name).write_bytes(name.encode())
    keys = {
        "shim_x64": str(sources / "shim"),
        "grub_x64": str(sources / "grub"),
        "shim_arm64": str(tmp_path / "absent"),
        "grub_arm64": str(tmp_path / "absent"),
    }
    ipxe_dir = {"binaries_dir": str(tmp_path / "none")}  # fmt: skip
    assert prepare_root(make_config(tmp_path, {"grub": keys, "ipxe": ipxe_dir})) == []
    config = make_config(tmp_path, {"grub": keys, "ipxe": ipxe_dir, **GRUB})
    assert prepare_root(config) == ["efi/x64/shimx64.efi", "efi/x64/grubx64.efi"]
    assert (tmp_path / "srv/efi/x64/grubx64.efi").read_bytes() == b"grub"
    assert prepare_root(config) == [], "copied again though unchanged"


@pytest.mark.skipif(shutil.which("sbattach") is None or not SIGNED_GRUB.is_file(),
                    reason="needs sbsigntool and grub-efi-amd64-signed")  # fmt: skip
def test_kernel_signed_reads_sbverify_output(tmp_path: Path) -> None:
    unsigned = tmp_path / "unsigned.efi"
    shutil.copyfile(SIGNED_GRUB, unsigned)
    subprocess.run(["sbattach", "--remove", str(unsigned)], check=True, capture_output=True)
    assert kernel_signed(SIGNED_GRUB) is True
    assert kernel_signed(unsigned) is False
    (tmp_path / "junk").write_bytes(b"not a PE file")
    assert kernel_signed(tmp_path / "junk") is None


def test_grub_config_boots_linux_entries_and_skips_what_needs_ipxe(tmp_path: Path) -> None:
    """`[entries]` of every kind: GRUB gets the `linux` entry of paths (rooted on its TFTP
    server); chain, ISO and URL entries are comments, and a default among them falls back to
    the first entry GRUB can boot. The result still passes grub-script-check."""
    publish(tmp_path / "srv", "alpha")
    entries = {
        "installer": {"title": "It's DI", "kernel": "di/linux", "initrd": ["di/initrd.gz"]},
        "xyz": {"chain": "https://boot.netboot.xyz/menu.ipxe"},
        "rescue": {"iso": "isos/rescue.iso"},
        "remote": {"kernel": "http://198.51.100.7/k"},
    }
    for default, expected in (("installer", "img-installer"), ("rescue", "img-alpha")):
        toml = {"entries": entries, "boot": {"loader": "grub", "default_image": default}}
        text = policy_for(tmp_path, toml).tftp_file(f"grub/clients/{MAC}.cfg")
        assert text is not None
        config = text.decode()
        assert f"set default={expected}\n" in config
        assert "menuentry 'It'\\''s DI' --id img-installer {" in config
        assert "  linux '/di/linux'\n  initrd '/di/initrd.gz'\n" in config
        for skipped in ("img-xyz (chain)", "img-rescue (sanboot)", "img-remote (linux)"):
            assert f"# netboot: entry {skipped} needs iPXE: skipped" in config
        assert config.count("menuentry ") == 3  # alpha, installer, local disk
        if shutil.which("grub-script-check"):
            result = subprocess.run(["grub-script-check"], input=text, capture_output=True)
            assert result.returncode == 0, result.stderr
