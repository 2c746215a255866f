"""Assembling an image tree from its sources with mounts that cannot outlive the build.

The build runs in a private mount namespace: its binds, overlays and loop mounts are
invisible to the rest of the system (a USB stick plugged in meanwhile is not mounted into
the image, the HTTP server cannot see the tree) and the kernel drops them all if the
process is killed outright. Loop devices come from `mount -o loop`, which sets autoclear,
so they go away with their mount. Normal exits unmount in reverse order.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from netboot.image.errors import ImageError
from netboot.image.sources import Source, SourcePart
from netboot.image.tree import DirView, resolve

CLONE_NEWNS = 0x00020000
EFI_SYSTEM_GUID = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
LINUX_SWAP_GUID = "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f"
SKIPPED_MBR_TYPES = {"ef", "82", "5", "f", "85"}  # EFI, swap, extended partitions


def run(command: list[str]) -> str:
    """Run a tool; a failure becomes one line naming the tool and its last complaint."""
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise ImageError(f"{command[0]} not found; install it") from None
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines() or ["(no output)"]
        raise ImageError(f"{' '.join(command[:2])} failed: {lines[-1]}")
    return result.stdout


def enter_private_namespace() -> None:
    """Move this process into its own mount namespace, propagating nothing back."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        error = os.strerror(ctypes.get_errno())
        raise ImageError(f"cannot create a private mount namespace: {error}")
    run(["mount", "--make-rprivate", "/"])


def mount_points() -> list[Path]:
    """Every mount point this process sees (octal escapes of /proc decoded)."""
    points = []
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            field = line.split(b" ")[4]
            decoded = field.replace(b"\\040", b" ").replace(b"\\011", b"\t")
            decoded = decoded.replace(b"\\012", b"\n").replace(b"\\134", b"\\")
            points.append(Path(os.fsdecode(decoded)))
    return points


def remove_tree(path: Path) -> None:
    """rmtree that refuses to descend into anything still mounted (a bind of / inside a
    stale build directory would otherwise take the system with it)."""
    real = Path(os.path.realpath(path))
    busy = [p for p in mount_points() if p == real or real in p.parents]
    if busy:
        raise ImageError(f"{path} still has mounts ({busy[0]}); unmount them first")
    shutil.rmtree(path, ignore_errors=False)


class Mounts:
    """The mounts of one build, undone in reverse order by close()."""

    def __init__(self) -> None:
        self.targets: list[Path] = []

    def mount(self, arguments: list[str], target: Path) -> None:
        run(["mount", *arguments, str(target)])
        self.targets.append(target)

    def close(self) -> list[str]:
        """Unmount everything; returns problems instead of raising, so one stuck mount
        does not leave the others behind."""
        problems = []
        while self.targets:
            target = self.targets.pop()
            try:
                run(["umount", str(target)])
            except ImageError:
                try:
                    run(["umount", "--lazy", str(target)])
                except ImageError as exc:
                    problems.append(str(exc))
        return problems


@dataclass(frozen=True)
class Partition:
    number: int
    offset: int
    size: int
    type: str


def partitions(disk: Path) -> list[Partition]:
    """The partition table of a disk image file, read with sfdisk (no loop device, no
    kernel partition scanning needed)."""
    table = json.loads(run(["sfdisk", "--json", str(disk)]))["partitiontable"]
    sector = int(table.get("sectorsize", 512))
    found = []
    for index, entry in enumerate(table.get("partitions", []), start=1):
        suffix = entry["node"].removeprefix(str(disk)).lstrip("p")
        number = int(suffix) if suffix.isdigit() else index
        found.append(
            Partition(number, entry["start"] * sector, entry["size"] * sector, entry["type"])
        )
    return found


def probe(path: Path, offset: int = 0, size: int = 0) -> dict[str, str]:
    """blkid's low-level probe of a file or a byte range of it: TYPE, PTTYPE..."""
    command = ["blkid", "-p", "-o", "export"]
    if offset or size:
        command += ["-O", str(offset), "-S", str(size)]
    result = subprocess.run([*command, str(path)], capture_output=True, text=True, check=False)
    values = {}
    for line in result.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key] = value
    return values


def _skipped(partition: Partition) -> bool:
    kind = partition.type.lower()
    return kind in (EFI_SYSTEM_GUID, LINUX_SWAP_GUID) or kind in SKIPPED_MBR_TYPES


def _mount_options(fstype: str, extra: tuple[str, ...]) -> str:
    # ext3/4 replay their journal even on a read-only mount unless told not to
    base = ["ro", "noload"] if fstype.startswith("ext") else ["ro"]
    return ",".join(base + [o for o in extra if o not in base])


def mount_file(part: SourcePart, target: Path, mounts: Mounts) -> None:
    """Loop-mount a disk image read-only: its first usable partition (or partition=N),
    skipping EFI system and swap partitions, or the whole file if it has no table."""
    whole = probe(part.path)
    if part.partition is not None or ("PTTYPE" in whole and "TYPE" not in whole):
        if "PTTYPE" not in whole:
            raise ImageError(f"{part.path}: partition={part.partition} but no partition table")
        table = partitions(part.path)
        if part.partition is not None:
            table = [p for p in table if p.number == part.partition]
            if not table:
                raise ImageError(f"{part.path} has no partition {part.partition}")
        for candidate in table:
            if part.partition is None and _skipped(candidate):
                continue
            fstype = part.fstype or probe(part.path, candidate.offset, candidate.size).get(
                "TYPE", ""
            )
            if not fstype or fstype == "swap":
                continue
            options = _mount_options(fstype, part.options)
            loop = f"loop,offset={candidate.offset},sizelimit={candidate.size}"
            mounts.mount(["-t", fstype, "-o", f"{loop},{options}", str(part.path)], target)
            return
        raise ImageError(f"{part.path}: no partition with a usable filesystem")
    fstype = part.fstype or whole.get("TYPE", "")
    if not fstype:
        raise ImageError(f"{part.path}: no filesystem or partition table found")
    options = _mount_options(fstype, part.options)
    mounts.mount(["-t", fstype, "-o", f"loop,{options}", str(part.path)], target)


def _mount_part(part: SourcePart, path: Path, target: Path, mounts: Mounts) -> None:
    if path.is_dir():
        # not --rbind: submounts (/proc, /srv, a chroot's own binds) stay out
        options = ",".join(["ro", *[o for o in part.options if o != "ro"]])
        mounts.mount(["--bind", "-o", options, str(path)], target)
    elif path.exists():
        mount_file(
            SourcePart(path, part.subdir, part.partition, part.fstype, part.options), target, mounts
        )
    else:
        raise ImageError(f"source not found: {part.path}")


def _join_point(root: Path, subdir: str, create: bool) -> Path:
    """Where a later part joins the tree, resolved inside the tree (an image's absolute
    symlink must not send the mount to the host's directory)."""
    view = DirView(root)
    real = resolve(view, subdir)
    if real is None and create:
        parent, _, leaf = subdir.rpartition("/")
        parent_real = resolve(view, parent) if parent else ""
        if parent_real is None:
            raise ImageError(f"subdir={subdir}: {parent} is missing in the image")
        real = f"{parent_real}/{leaf}" if parent_real else leaf
        os.makedirs(root / real, exist_ok=True)
    if real is None or not (root / real).is_dir():
        raise ImageError(f"subdir={subdir}: no such directory in the image")
    return root / real


def assemble(source: Source, workdir: Path, overlay: bool, mounts: Mounts) -> Path:
    """Mount the source parts under workdir and return the image root. With overlay, each
    part gets a tmpfs-backed overlay so cleanup can edit files without touching the
    source; without, the tree is the read-only source itself."""
    workdir.mkdir(mode=0o700)
    mounts.mount(["-t", "tmpfs", "-o", "mode=0700", "netboot-image"], workdir)
    root = workdir / "root"
    root.mkdir()
    for index, part in enumerate(source.parts):
        path = part.path
        if index > 0 and not path.is_absolute():
            real = resolve(DirView(root), str(path))
            if real is None:
                raise ImageError(f"source part {path} not found inside the image")
            path = root / real
        target = root if index == 0 else _join_point(root, part.subdir, create=overlay)
        if not overlay:
            _mount_part(part, path, target, mounts)
            continue
        lower, upper, work = (workdir / f"{kind}{index}" for kind in ("lower", "up", "work"))
        for directory in (lower, upper, work):
            directory.mkdir()
        _mount_part(part, path, lower, mounts)
        options = f"lowerdir={lower},upperdir={upper},workdir={work}"
        mounts.mount(["-t", "overlay", "-o", options, "netboot-overlay"], target)
    return root
