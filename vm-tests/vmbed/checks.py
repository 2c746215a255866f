"""What a finished boot must show: the image's own init ran on an overlay root of the version
the server published, and the server's record of that client holds every step in order."""

from __future__ import annotations

from dataclasses import dataclass

from vmbed.image import MARKER_RE, Published, TestImage
from vmbed.qemu import QemuClient

DHCP_KINDS = ("dhcp-offer", "proxy-ack", "dhcp-ack")


@dataclass(frozen=True)
class Marker:
    pid: str
    rootfs: str
    stamp: str
    cmdline: dict[str, str]
    offset: int  # where the marker ends in the console text


def parse_cmdline(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for word in text.split():
        key, _, value = word.partition("=")
        params.setdefault(key, value)
    return params


def wait_for_marker(client: QemuClient, timeout: float) -> Marker:
    match = client.wait_for(MARKER_RE.pattern, timeout)
    parsed = MARKER_RE.search(match.group(0))
    assert parsed is not None
    return Marker(
        parsed["pid"],
        parsed["rootfs"],
        parsed["stamp"],
        parse_cmdline(parsed["cmdline"]),
        match.end(),
    )


def check_image_boot(marker: Marker, image: TestImage, mac: str) -> Published:
    """The marker against what is published; returns the version the client booted."""
    cmdline = marker.cmdline
    assert marker.pid == "1", f"marker not printed by PID 1 (the image's /sbin/init): {marker}"
    assert marker.rootfs == "overlay", f"root filesystem is {marker.rootfs!r}, not overlay"
    assert cmdline.get("netboot.image") == image.name, cmdline
    version = cmdline.get("netboot.version", "")
    booted = image.version(version)  # the stamp is read back from that version's squashfs
    assert booted.manifest.get("version") == version, (booted.manifest, version)
    assert marker.stamp == booted.stamp, (
        f"stamp {marker.stamp!r} is not that of published version {version} ({booted.stamp!r})"
    )
    assert cmdline.get("BOOTIF") == "01-" + mac.replace(":", "-"), cmdline
    return booted


def kinds(record: dict | None) -> list[str]:
    return [event.get("kind", "") for event in (record or {}).get("events", [])]


def check_record(
    record: dict | None,
    mac: str,
    *,
    tftp: bool,
    version: Published,
    initrd: str = "standalone.img",
    addon: bool = False,
) -> list[str]:
    """Every step of the chain, in order, for this MAC; returns the kinds seen."""
    assert record is not None, f"the server has no record of {mac}"
    assert record.get("mac") == mac, record.get("mac")
    seen = kinds(record)
    wanted = ["dhcp"] + (["tftp"] if tftp else []) + ["script", "kernel", "initrd"]
    wanted += (["addon"] if addon else []) + ["image"]
    positions = []
    for step in wanted:
        names = DHCP_KINDS if step == "dhcp" else (step,)
        found = [i for i, kind in enumerate(seen) if kind in names]
        assert found, f"no {step!r} step in the record of {mac}: {seen}"
        positions.append(found[0] if step == "dhcp" else found[-1])
    assert positions == sorted(positions), f"steps out of order {wanted}: {seen}"
    prefix = f"images/{version.name}/versions/{version.version}/"
    files = {e["kind"]: e.get("file", "") for e in record["events"] if "file" in e}
    assert files.get("kernel") == prefix + "vmlinuz", files
    assert files.get("initrd") == prefix + initrd, files
    assert files.get("image") == prefix + "root.squashfs", files
    if tftp:
        assert files.get("tftp", "").startswith("ipxe/"), files
    return seen
