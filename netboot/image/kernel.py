"""Finding and extracting an image's kernel and initramfs, the way `ltsp kernel` does.

Each rule is a glob for the kernel (tried at the image root and under boot/) and a sed
`s|from|to|` turning the kernel's path into its initramfs path; the first rule with a
match wins and, within it, the newest kernel by `sort -V`. An image with a kernel but no
initramfs (busybox or dracut-less systems) is accepted in a second pass: it boots with
the standalone initramfs instead.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from netboot import layout
from netboot.image.errors import ImageError
from netboot.image.tree import DirView, ListingView, TreeView, glob, resolve_file
from netboot.image.version_sort import version_key

# (kernel glob, sed expression for the initrd), in ltsp kernel's order.
KERNEL_RULES: tuple[tuple[str, str], ...] = (
    ("boot/*/loader/linux", "s|linux|initrd|"),  # openSUSE live
    ("casper/vmlinuz", "s|vmlinuz|initrd|"),  # Ubuntu live 18+
    ("casper/vmlinuz", "s|vmlinuz|initrd.lz|"),  # older Ubuntu live
    ("casper/vmlinuz", "s|vmlinuz|initrd.gz|"),
    ("install.amd/vmlinuz", "s|vmlinuz|initrd.gz|"),  # Debian installer
    ("isolinux/vmlinuz", "s|vmlinuz|initrd.img|"),  # Fedora live
    ("live/vmlinuz-*", "s|vmlinuz|initrd.img|"),  # Debian live
    ("vmlinuz", "s|vmlinuz|initrd.img|"),  # deb symlinks (kernel-img.conf), preferred
    ("vmlinuz-*", "s|vmlinuz|initrd.img|"),  # deb installations
    ("vmlinuz-*", r"s|vmlinuz-\(.*\)|initramfs-\1.img|"),  # Fedora, CentOS, Gentoo
    ("vmlinuz", "s|vmlinuz|core.gz|"),  # Tiny Core
)
KERNEL_NAME_PREFIXES = ("vmlinuz-", "vmlinux-", "linux-", "bzImage-", "kernel-")


class KernelNotFound(ImageError):
    """No rule matched a kernel in the image."""


@dataclass(frozen=True)
class KernelPair:
    """What was found: paths as matched and their symlink-free real paths in the image."""

    kernel: str
    kernel_real: str
    initrd: str | None
    initrd_real: str | None


@dataclass(frozen=True)
class KernelInfo:
    """The kernel (and initramfs) copied out of an image."""

    version: str
    kernel: Path
    initrd: Path | None
    kernel_source: str
    initrd_source: str | None


Substitution = Callable[[str], str]


def _bre_to_python(bre: str) -> str:
    """A sed basic regular expression in Python syntax: `\\(` groups, `(` is literal."""
    out = []
    i = 0
    while i < len(bre):
        char = bre[i]
        if char == "\\" and i + 1 < len(bre):
            nxt = bre[i + 1]
            out.append(nxt if nxt in "(){}|+?" else "\\" + nxt)
            i += 2
            continue
        out.append("\\" + char if char in "(){}|+?" else char)
        i += 1
    return "".join(out)


def _replacement(text: str) -> Callable[[re.Match[str]], str]:
    """sed's replacement: `\\1`..`\\9` groups, `&` the whole match, `\\x` a literal x."""
    pieces: list[str | int] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            pieces.append(int(nxt) if nxt.isdigit() else nxt)
            i += 2
            continue
        pieces.append(0 if char == "&" else char)
        i += 1
    return lambda m: "".join(p if isinstance(p, str) else (m.group(p) or "") for p in pieces)


def parse_sed(expression: str) -> Substitution:
    """`s|from|to|[g]` -> a function applying it; any delimiter, as in sed."""
    if len(expression) < 2 or expression[0] != "s":
        raise ImageError(f"not a sed substitution: {expression!r} (expected s|from|to|)")
    delim = expression[1]
    fields: list[str] = []
    current = ""
    i = 2
    while i < len(expression):
        char = expression[i]
        if char == "\\" and i + 1 < len(expression) and expression[i + 1] == delim:
            current += delim
            i += 2
            continue
        if char == delim:
            fields.append(current)
            current = ""
        else:
            current += char
        i += 1
    fields.append(current)
    if len(fields) != 3 or not fields[0] or set(fields[2]) - set("g"):
        raise ImageError(f"not a sed substitution: {expression!r} (expected s|from|to|)")
    try:
        pattern = re.compile(_bre_to_python(fields[0]))
    except re.error as exc:
        raise ImageError(f"bad regular expression in {expression!r}: {exc}") from None
    replace = _replacement(fields[1])
    count = 0 if "g" in fields[2] else 1
    return lambda path: pattern.sub(replace, path, count=count)


def parse_rule(text: str) -> tuple[str, Substitution | None]:
    """A `-k` value: 'GLOB [SED]', e.g. 'vmlinuz-6.1* s|vmlinuz|initrd.img|'."""
    parts = text.split(None, 1)
    if not parts:
        raise ImageError("empty -k value (expected 'GLOB s|from|to|')")
    return parts[0], parse_sed(parts[1].strip()) if len(parts) > 1 else None


def _rules(kernel_regex: str | None) -> list[tuple[str, Substitution | None]]:
    rules = [parse_rule(kernel_regex)] if kernel_regex else []
    return rules + [(g, parse_sed(s)) for g, s in KERNEL_RULES]


def _candidates(view: TreeView, pattern: str) -> list[tuple[str, str]]:
    """(matched path, real path) of the kernels a glob finds, newest first."""
    found = {}
    for base in ("", "boot/"):
        for rel in glob(view, base + pattern):
            real = resolve_file(view, rel)
            if real is not None:
                found[rel] = real
    return sorted(found.items(), key=lambda item: version_key(item[0]), reverse=True)


def find_kernel(view: TreeView, kernel_regex: str | None = None) -> KernelPair:
    """The kernel and initramfs to boot; raises KernelNotFound."""
    rules = _rules(kernel_regex)
    for pattern, substitute in rules:
        if substitute is None:
            continue
        for rel, real in _candidates(view, pattern):
            initrd = substitute(rel)
            initrd_real = resolve_file(view, initrd) if initrd != rel else None
            if initrd_real is not None:
                return KernelPair(rel, real, initrd, initrd_real)
    for pattern, _substitute in rules:
        for rel, real in _candidates(view, pattern):
            return KernelPair(rel, real, None, None)
    raise KernelNotFound("no kernel found (looked for vmlinuz, boot/vmlinuz-*, casper/, live/…)")


def version_from_header(kernel: Path) -> str:
    """The version string a bzImage carries in its setup header ('' if not a bzImage)."""
    try:
        with open(kernel, "rb") as f:
            head = f.read(0x10000)
    except OSError:
        return ""
    if len(head) < 0x210 or head[0x202:0x206] != b"HdrS":
        return ""
    (pointer,) = struct.unpack_from("<H", head, 0x20E)
    start = pointer + 0x200
    if pointer == 0 or start >= len(head):
        return ""
    text = head[start : head.find(b"\0", start)].decode("ascii", errors="replace")
    return text.split(" ", 1)[0]


def kernel_version(kernel_real: str, copied: Path, modules: list[str]) -> str:
    """From the file name (vmlinuz-VER), else the bzImage header, else the only
    lib/modules directory, else ''."""
    name = kernel_real.rsplit("/", 1)[-1]
    for prefix in KERNEL_NAME_PREFIXES:
        if name.startswith(prefix) and len(name) > len(prefix):
            return name[len(prefix) :]
    version = version_from_header(copied)
    if version:
        return version
    return modules[0] if len(modules) == 1 else ""


def _install(source: Path, destination: Path) -> None:
    """Copy with mode 644 under a temporary name, then rename into place."""
    temporary = destination.with_name(f".{destination.name}.tmp")
    shutil.copyfile(source, temporary)
    os.chmod(temporary, 0o644)
    with open(temporary, "rb") as f:
        os.fsync(f.fileno())
    os.replace(temporary, destination)


def _modules(view: TreeView) -> list[str]:
    """The kernel versions lib/modules has directories for."""
    for base in ("lib/modules", "usr/lib/modules"):
        names = [n.rsplit("/", 1)[-1] for n in glob(view, base + "/*")]
        if names:
            return names
    return []


def extract_kernel(tree: Path, dest: Path, kernel_regex: str | None = None) -> KernelInfo:
    """Copy the kernel (and initramfs) of a mounted image tree into dest as vmlinuz and
    initrd.img; raises KernelNotFound."""
    view = DirView(tree)
    pair = find_kernel(view, kernel_regex)
    kernel = dest / layout.KERNEL
    _install(view.path(pair.kernel_real), kernel)
    initrd = None
    if pair.initrd_real is not None:
        initrd = dest / layout.INITRD
        _install(view.path(pair.initrd_real), initrd)
    version = kernel_version(pair.kernel_real, kernel, _modules(view))
    return KernelInfo(version, kernel, initrd, pair.kernel, pair.initrd)


def _unsquashfs_name(path: str) -> str:
    """unsquashfs treats extract names as wildcards: escape the wildcard characters."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", path)


def extract_kernel_from_squashfs(
    image: Path, dest: Path, kernel_regex: str | None = None
) -> KernelInfo:
    """Like extract_kernel, for a squashfs file: list it, then unsquashfs only the two
    files into a temporary directory inside dest."""
    view = ListingView.of_squashfs(image)
    pair = find_kernel(view, kernel_regex)
    wanted = [p for p in (pair.kernel_real, pair.initrd_real) if p is not None]
    with tempfile.TemporaryDirectory(prefix=".unsquashfs-", dir=dest) as temporary:
        out = Path(temporary) / "tree"
        result = subprocess.run(
            ["unsquashfs", "-no-progress", "-d", str(out), str(image)]
            + [_unsquashfs_name(p) for p in wanted],
            capture_output=True,
            check=False,
        )
        if result.returncode != 0 or not (out / pair.kernel_real).is_file():
            lines = result.stderr.decode(errors="replace").strip().splitlines() or ["?"]
            raise ImageError(f"unsquashfs could not extract {pair.kernel_real}: {lines[-1]}")
        kernel = dest / layout.KERNEL
        _install(out / pair.kernel_real, kernel)
        initrd = None
        if pair.initrd_real is not None:
            initrd = dest / layout.INITRD
            _install(out / pair.initrd_real, initrd)
    version = kernel_version(pair.kernel_real, kernel, _modules(view))
    return KernelInfo(version, kernel, initrd, pair.kernel, pair.initrd)
