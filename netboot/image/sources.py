"""Image sources as `ltsp image` names them: a chroot, a raw VM disk, or `/`.

A SOURCE is one or more parts joined by ',,' ("img,opts,,img2,opts2"): the first part is
the image root, later parts join it at `subdir=` (`/,,/boot,subdir=boot` for a separate
/boot partition). Options `partition=N`, `fstype=T` and `subdir=D` are ours; the rest go
to `mount -o`. A simple name is looked up under the base dir as NAME/ then NAME.img.
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path

from netboot.image.errors import ImageError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
SPECIAL_OPTIONS = ("partition", "fstype", "subdir")


@dataclass(frozen=True)
class SourcePart:
    """One thing to mount: a directory (bind) or a file (loop), and where it joins."""

    path: Path
    subdir: str = ""
    partition: int | None = None
    fstype: str = ""
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class Source:
    """A parsed SOURCE argument: the image name and the parts to assemble."""

    spec: str
    name: str
    parts: tuple[SourcePart, ...]


def arch_name() -> str:
    """The chrootless image's name: `uname -m`, with every *86 called x86_32."""
    machine = platform.machine() or "unknown"
    return "x86_32" if machine.endswith("86") else machine


def is_path(text: str) -> bool:
    return text.startswith(("/", "./", "../")) or text in (".", "..")


def image_name(path_text: str) -> str:
    """The name a path gives its image: `/` -> arch, dir -> basename, file -> basename
    without `.img`. Lexical, so `-r` works on sources that no longer exist."""
    stripped = path_text.rstrip("/")
    if stripped in ("", "."):
        return arch_name() if stripped == "" else validate_name(Path.cwd().name)
    name = os.path.basename(stripped)
    if name == "..":
        name = Path(stripped).resolve().name or arch_name()
    if os.path.isfile(stripped) or name.endswith(".img"):
        name = name.removesuffix(".img")
    return validate_name(name)


def validate_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ImageError(
            f"bad image name {name!r}: use letters, digits, '.', '_', '+' and '-' only"
        )
    return name


def lookup(text: str, base_dir: Path) -> Path:
    """A simple name -> BASE/NAME/ or BASE/NAME.img; a path is taken as it is."""
    if is_path(text):
        path = Path(text)
        if not path.exists():
            raise ImageError(f"source not found: {text}")
        return path
    if "/" in text:
        raise ImageError(f"source {text!r}: give a simple name or a path starting with / or ./")
    if (base_dir / text).is_dir():
        return base_dir / text
    for disk in (base_dir / f"{text}.img", base_dir / text):
        if disk.is_file():
            return disk
    raise ImageError(f"source not found: {text} (looked for {base_dir}/{text}/ and {text}.img)")


def _parse_part(text: str) -> tuple[str, dict[str, str], tuple[str, ...]]:
    path, *raw = text.split(",")
    special: dict[str, str] = {}
    options = []
    for option in raw:
        key, sep, value = option.partition("=")
        if sep and key in SPECIAL_OPTIONS:
            special[key] = value
        elif option:
            options.append(option)
    return path, special, tuple(options)


def _make_part(path: Path, special: dict[str, str], options: tuple[str, ...]) -> SourcePart:
    partition = None
    if "partition" in special:
        if not special["partition"].isdigit() or int(special["partition"]) < 1:
            raise ImageError(f"partition={special['partition']}: expected a number from 1")
        partition = int(special["partition"])
    subdir = special.get("subdir", "").strip("/")
    if ".." in subdir.split("/"):
        raise ImageError(f"subdir={subdir}: '..' is not allowed")
    return SourcePart(path, subdir, partition, special.get("fstype", ""), options)


def parse_source(spec: str, base_dir: Path) -> Source:
    """Parse and look up a SOURCE argument; raises ImageError naming what is missing."""
    if not spec:
        raise ImageError("empty source")
    chunks = spec.split(",,")
    parts = []
    name = ""
    for index, chunk in enumerate(chunks):
        path_text, special, options = _parse_part(chunk)
        if not path_text:
            raise ImageError(f"source {spec!r}: part {index + 1} names no path")
        if index == 0:
            path = lookup(path_text, base_dir)
            name = image_name(str(path) if not is_path(path_text) else path_text)
        elif path_text.startswith("/"):
            path = Path(path_text)
            if not path.exists():
                raise ImageError(f"source not found: {path_text}")
        else:
            path = Path(path_text)  # relative to the assembled image, checked when mounted
        parts.append(_make_part(path, special, options))
    if parts[0].subdir:
        raise ImageError(f"source {spec!r}: the first part cannot have subdir=")
    return Source(spec, name, tuple(parts))


def list_sources(base_dir: Path) -> list[str]:
    """Every source under the base dir, for `netboot image` without arguments: chroots
    (directories with proc/) and raw disks (NAME.img files)."""
    try:
        entries = sorted(base_dir.iterdir())
    except OSError:
        return []
    found = []
    for entry in entries:
        if entry.is_dir() and (entry / "proc").is_dir():
            found.append(entry.name)
        elif entry.suffix == ".img" and entry.is_file():
            found.append(entry.stem)
    return found
