"""HTTP over real sockets with curl: the boot script, files with Range/ETag, confinement,
client settings and the client record."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from netboot import layout
from testbed.lan import SERVER_IP, Lan

pytestmark = pytest.mark.netns  # every test runs on the `lan` fixture


def publish_fake_image(root: Path, name: str, version: str, *, initrd: bool = True) -> Path:
    """A published version as `netboot image` lays it out (contents are test bytes)."""
    directory = layout.version_dir(root, name, version)
    directory.mkdir(parents=True)
    squashfs = os.urandom(300_000)
    (directory / layout.SQUASHFS).write_bytes(squashfs)
    (directory / layout.KERNEL).write_bytes(b"kernel " + name.encode())
    if initrd:
        (directory / layout.INITRD).write_bytes(b"initrd")
    else:
        (directory / layout.STANDALONE_INITRD).write_bytes(b"standalone")
    manifest = {
        "name": name,
        "version": version,
        "size": len(squashfs),
        "sha256": hashlib.sha256(squashfs).hexdigest(),
    }
    (directory / layout.MANIFEST).write_text(json.dumps(manifest))
    current = layout.image_dir(root, name) / layout.CURRENT
    tmp = current.with_name(".current.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(f"{layout.VERSIONS}/{version}")
    tmp.replace(current)
    return directory


def test_script_without_parameters_chains_with_them(lan: Lan) -> None:
    result = lan.curl("/boot.ipxe", "-f")
    assert result.returncode == 0
    assert result.stdout.startswith("#!ipxe")
    assert f"chain http://{SERVER_IP}/boot.ipxe?mac=${{mac:hexhyp}}&platform=" in result.stdout


def test_menu_exists_before_any_image(lan: Lan) -> None:
    result = lan.curl("/boot.ipxe?mac=52-54-00-00-00-10&platform=pcbios&buildarch=i386", "-f")
    script = result.stdout
    assert script.startswith("#!ipxe")
    assert "item local Boot from local disk" in script
    assert "item shell iPXE shell" in script
    assert "sanboot --no-describe --drive 0x80" in script
    assert "choose --default local" in script


def test_published_image_appears_without_restart_and_names_this_server(lan: Lan) -> None:
    publish_fake_image(lan.root, "bookworm", "20261123-080000")
    sha = json.loads(
        (layout.version_dir(lan.root, "bookworm", "20261123-080000") / layout.MANIFEST).read_text()
    )["sha256"]
    script = lan.curl("/boot.ipxe?mac=52-54-00-00-00-11&platform=efi&buildarch=x86_64", "-f").stdout
    base = f"http://{SERVER_IP}"
    vdir = f"{base}/images/bookworm/versions/20261123-080000"
    assert "item img-bookworm bookworm (20261123-080000)" in script
    assert "choose --default img-bookworm" in script
    assert f"kernel {vdir}/vmlinuz initrd=initrd.img " in script
    assert f"initrd --name initrd.img {vdir}/initrd.img" in script
    assert f"netboot.url={vdir}/root.squashfs" in script
    assert f"netboot.sha256={sha}" in script
    assert "netboot.version=20261123-080000" in script
    assert "exit 1" in script  # EFI: local disk means back to the firmware's boot order
    # without the add-on, only the image's own initrd is named
    assert "initrd=netboot.img" not in script
    (lan.root / layout.ADDON_INITRD).write_bytes(b"addon")
    script = lan.curl("/boot.ipxe?mac=52-54-00-00-00-11&platform=efi", "-f").stdout
    assert "initrd=initrd.img initrd=netboot.img" in script
    assert f"initrd --name netboot.img {base}/netboot.img" in script


def test_image_without_initramfs_boots_the_standalone_initrd(lan: Lan) -> None:
    publish_fake_image(lan.root, "tiny", "20261123-090000", initrd=False)
    script = lan.curl("/boot.ipxe?mac=52-54-00-00-00-12&platform=pcbios", "-f").stdout
    assert "initrd=standalone.img" in script
    assert "images/tiny/versions/20261123-090000/standalone.img" in script


def test_file_download_head_range_and_etag(lan: Lan) -> None:
    directory = publish_fake_image(lan.root, "rangey", "20261123-100000")
    data = (directory / layout.SQUASHFS).read_bytes()
    path = "/images/rangey/versions/20261123-100000/root.squashfs"
    got = subprocess.run(
        lan.client_ns.exec("curl", "-sf", lan.serve.base + path), capture_output=True, check=True
    ).stdout
    assert got == data
    ranged = subprocess.run(
        lan.client_ns.exec("curl", "-s", "-D", "-", "-r", "1000-1999", lan.serve.base + path),
        capture_output=True,
        check=True,
    ).stdout
    head, _, payload = ranged.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 206")
    assert f"content-range: bytes 1000-1999/{len(data)}".encode() in head.lower()
    assert payload == data[1000:2000]
    headers = lan.curl(path, "-I").stdout
    assert headers.startswith("HTTP/1.1 200")
    assert f"content-length: {len(data)}" in headers.lower()
    etag = next(
        line.split(":", 1)[1].strip()
        for line in headers.splitlines()
        if line.lower().startswith("etag:")
    )
    again = lan.curl(path, "-o", "/dev/null", "-w", "%{http_code}", "-H", f"If-None-Match: {etag}")
    assert again.stdout == "304"


def test_traversal_is_refused(lan: Lan, tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    (lan.root / "escape").symlink_to(tmp_path)
    try:
        for path in (
            "/../../../../etc/passwd",
            "/images/../../etc/passwd",
            "/%2e%2e/%2e%2e/etc/passwd",
            "/escape/secret.txt",
            "/ipxe/%00x",
        ):
            result = lan.curl(path, "--path-as-is", "-o", "/dev/null", "-w", "%{http_code}")
            assert result.stdout in ("403", "404"), (path, result.stdout)
        assert "secret" not in lan.curl("/escape/secret.txt").stdout
    finally:
        (lan.root / "escape").unlink()


def test_client_settings_and_record(lan: Lan) -> None:
    mac = "52:54:00:00:00:13"
    lan.curl(f"/boot.ipxe?mac={mac.replace(':', '-')}&platform=pcbios", "-f")
    settings = lan.curl(f"/clients/{mac}", "-f")
    assert settings.returncode == 0
    assert settings.stdout.startswith("# netboot client settings")
    lan.curl("/images/rangey/versions/20261123-100000/vmlinuz", "-f", "-o", "/dev/null")
    record = lan.serve.api(f"/api/clients/{mac}")
    kinds = [e["kind"] for e in record["events"]]
    assert kinds[:1] == ["script"]
    assert "settings" in kinds
    assert "kernel" in kinds  # tied to this MAC through the IP the script request came from
    assert record["ip"] == "10.231.0.50"
    assert (
        lan.curl("/api/clients/not-a-mac", "-o", "/dev/null", "-w", "%{http_code}").stdout == "400"
    )
