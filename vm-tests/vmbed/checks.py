"""What a finished boot must show: the image's own init ran on an overlay root of the version
the server published, and the server's record of that client holds every step in order."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vmbed.image import MARKER_RE, Published, TestImage
from vmbed.qemu import QemuClient

if TYPE_CHECKING:
    from vmbed.config import VmServe
    from vmbed.run import VmRun

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


def boot_to_report(
    vm: VmRun, server: VmServe, report_re: re.Pattern, stamp: str, *, mac: str, name: str,
    timeout: float,
) -> tuple[QemuClient, re.Match]:  # fmt: skip
    """A 1.5 GB BIOS virtio client booted to a distribution's report line (its unit runs
    after multi-user.target): the target is active, the root is the overlay, and the root
    carries `stamp`. Returns the client and the report's match."""
    client = vm.boot(server, "bios", "virtio-net-pci", mac=mac, memory_mb=1536, name=name)
    report = report_re.search(client.wait_for(report_re.pattern, timeout).group(0))
    assert report is not None
    print(f"{name}: power-on to multi-user.target {client.elapsed():.0f} s")
    assert report["target"] == "active", report.group(0)
    assert report["rootfs"] == "overlay", report.group(0)
    assert report["stamp"] == stamp, f"booted another root than the one stamped {stamp}"
    return client, report
