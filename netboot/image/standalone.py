"""The standalone initramfs for images without initramfs-tools, and the pieces it shares
with the add-on initrd: the client scripts, busybox-static and kernel modules.

Neither initrd can rely on the image's initramfs having the drivers netboot needs
(initramfs-tools' MODULES=most leaves out squashfs and overlay), so both carry the image
kernel's own modules: the wanted names resolved through `modules.dep`, dependencies first.
"""

from __future__ import annotations

import gzip
import lzma
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from netboot.atomic import write_atomically
from netboot.image import cpio
from netboot.image.errors import ImageError
from netboot.image.receiver import add_udp_receiver
from netboot.resources import ipxe_dir

# ipxe/initrd/ of the source tree: the shell scripts both initrds are made of.
CLIENT_DIR = Path(os.environ.get("NETBOOT_CLIENT_DIR", ipxe_dir() / "initrd"))
BUSYBOX = Path(os.environ.get("NETBOOT_BUSYBOX", "/bin/busybox"))

# What the client needs from the kernel: NICs QEMU and most PCs present, the socket
# udhcpc uses, and the filesystems of the root. Names missing from a kernel are skipped.
WANTED_MODULES = (
    "virtio_pci", "virtio_net", "e1000", "e1000e", "af_packet", "loop", "squashfs", "overlay",
)  # fmt: skip
REQUIRED_MODULES = ("loop", "squashfs", "overlay")
# The kernel's NFS client (and sunrpc, lockd, ... through modules.dep) for
# netboot.method=nfs: the add-on only, the standalone initramfs fetches over HTTP. Optional:
# a kernel without them cannot use the NFS method, the rest still works.
NFS_MODULES = ("nfsv4", "nfsv3")


class InitrdError(ImageError):
    """A build problem; str() is the one line shown to the user (exit 1)."""


@dataclass(frozen=True)
class Module:
    name: str
    path: str  # relative to lib/modules/VER, as in modules.dep
    deps: tuple[str, ...]  # paths


def client_file(name: str) -> Path:
    path = CLIENT_DIR / name
    if not path.is_file():
        raise InitrdError(f"client script {path} is missing (NETBOOT_CLIENT_DIR?)")
    return path


def is_static_elf(data: bytes) -> bool:
    """An ELF executable without a PT_INTERP program header needs no dynamic loader."""
    if data[:4] != b"\x7fELF" or data[4] != 2:  # 64-bit only, like the kernels we boot
        return False
    order = "little" if data[5] == 1 else "big"
    phoff = int.from_bytes(data[0x20:0x28], order)
    phentsize = int.from_bytes(data[0x36:0x38], order)
    phnum = int.from_bytes(data[0x38:0x3A], order)
    for index in range(phnum):
        offset = phoff + index * phentsize
        if int.from_bytes(data[offset : offset + 4], order) == 3:  # PT_INTERP
            return False
    return True


def static_busybox() -> bytes:
    """Debian's busybox-static binary; the dynamic `busybox` package has the same path."""
    try:
        data = BUSYBOX.read_bytes()
    except OSError as exc:
        raise InitrdError(f"{BUSYBOX}: {exc.strerror} (apt-get install busybox-static)") from None
    if not is_static_elf(data):
        raise InitrdError(f"{BUSYBOX} is not statically linked (apt-get install busybox-static)")
    return data


def add_client_files(archive: cpio.Archive) -> None:
    """/netboot/{bin/busybox, lib.sh, udhcpc.script}: what both initrds run on."""
    archive.file("netboot/bin/busybox", static_busybox(), 0o755)
    archive.copy("netboot/lib.sh", client_file("lib.sh"), 0o644)
    archive.copy("netboot/udhcpc.script", client_file("udhcpc.script"), 0o755)
    add_udp_receiver(archive)


def module_name(path: str) -> str:
    """kernel/drivers/net/virtio_net.ko.xz -> virtio_net (modprobe treats - and _ alike)."""
    base = path.rsplit("/", 1)[-1]
    return base.split(".ko", 1)[0].replace("-", "_")


def modules_dir(tree: Path, version: str) -> Path:
    """lib/modules/VER of an image tree (usr/lib on merged-/usr trees without the symlink)."""
    for candidate in (tree / "lib/modules" / version, tree / "usr/lib/modules" / version):
        if (candidate / "modules.dep").is_file():
            return candidate
    raise InitrdError(f"no lib/modules/{version}/modules.dep in {tree}")


def ensure_modules_dep(tree: Path, version: str) -> bool:
    """Run `depmod -b` in the tree when lib/modules/VER has modules but no modules.dep (a
    chroot where depmod never ran); True if it ran. InitrdError (one line) if it fails."""
    directories = [tree / base / version for base in ("lib/modules", "usr/lib/modules")]
    if any((d / "modules.dep").is_file() for d in directories):
        return False
    try:
        result = subprocess.run(
            ["depmod", "-b", str(tree), version], capture_output=True, text=True, check=False
        )
    except OSError as exc:
        raise InitrdError(f"lib/modules/{version} has no modules.dep: depmod: {exc}") from None
    if result.returncode != 0 or not any((d / "modules.dep").is_file() for d in directories):
        detail = (result.stderr.strip().splitlines() or ["no modules.dep written"])[-1]
        raise InitrdError(f"lib/modules/{version} has no modules.dep: depmod -b: {detail}")
    return True


def read_modules_dep(directory: Path) -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for line in (directory / "modules.dep").read_text().splitlines():
        path, sep, rest = line.partition(":")
        if sep:
            modules[module_name(path)] = Module(module_name(path), path, tuple(rest.split()))
    return modules


def read_builtin(directory: Path) -> set[str]:
    try:
        return {module_name(line) for line in (directory / "modules.builtin").read_text().split()}
    except OSError:
        return set()


def resolve_modules(directory: Path, names: tuple[str, ...] = WANTED_MODULES) -> list[str]:
    """Paths of the wanted modules and their dependencies, each after its dependencies.

    Built-in or absent names are skipped; a required one that is neither modular nor
    built-in is an error, because the client could not mount its root without it.
    """
    modules = read_modules_dep(directory)
    builtin = read_builtin(directory)
    by_path = {module.path: module for module in modules.values()}
    order: list[str] = []
    visiting: set[str] = set()

    def visit(path: str) -> None:
        if path in order or path in visiting:
            return
        visiting.add(path)
        module = by_path.get(path)
        for dep in module.deps if module else ():
            visit(dep)
        order.append(path)

    for name in names:
        name = name.replace("-", "_")
        if name in modules:
            visit(modules[name].path)
        elif name in REQUIRED_MODULES and name not in builtin:
            raise InitrdError(f"kernel {directory.name} has no {name} module (nor built in)")
    return order


def module_bytes(path: Path) -> bytes:
    """Module contents, decompressed: busybox insmod loads plain .ko files only."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    if path.name.endswith(".zst"):
        return subprocess.run(["zstd", "-dcq"], input=data, capture_output=True, check=True).stdout
    return data


def _pack_modules(archive: cpio.Archive, directory: Path, version: str, paths: list[str],
                  list_name: str) -> list[str]:  # fmt: skip
    plain = []
    for path in paths:
        name = path.removesuffix(".xz").removesuffix(".gz").removesuffix(".zst")
        archive.file(f"netboot/modules/{version}/{name}", module_bytes(directory / path))
        plain.append(name)
    archive.file(f"netboot/modules/{version}/{list_name}",
                 "".join(f"{p}\n" for p in plain).encode())  # fmt: skip
    return plain


def add_modules(archive: cpio.Archive, tree: Path, version: str) -> list[str]:
    """Pack resolved modules as /netboot/modules/VER/<path> plus their load `order`."""
    directory = modules_dir(tree, version)
    return _pack_modules(archive, directory, version, resolve_modules(directory), "order")


def add_nfs_modules(archive: cpio.Archive, tree: Path, version: str) -> list[str]:
    """Pack the NFS client modules not already in `order` plus their load list `nfs-order`;
    none (and no list) when the tree lacks them."""
    directory = modules_dir(tree, version)
    packed = set(resolve_modules(directory))
    paths = [path for path in resolve_modules(directory, NFS_MODULES)
             if path not in packed and (directory / path).is_file()]  # fmt: skip
    return _pack_modules(archive, directory, version, paths, "nfs-order") if paths else []


def extract_kernel_files(
    squashfs: Path, version: str, dest: Path, extra: tuple[str, ...] = ()
) -> Path:
    """Unpack what the initrds need of kernel VER (modules.dep, the wanted modules and the
    `extra` ones, the kernel config) from an image's squashfs into dest; returns dest as an
    image tree. Modules the squashfs lacks are left out (unsquashfs skips missing paths)."""

    def unsquash(paths: list[str]) -> None:
        cmd = ["unsquashfs", "-q", "-n", "-f", "-follow", "-d", str(dest), str(squashfs), *paths]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            detail = (result.stderr.strip().splitlines() or ["failed"])[-1]
            raise InitrdError(f"unsquashfs {squashfs}: {detail}")

    meta = [f"modules.{n}" for n in ("dep", "builtin", "order")]
    try:
        unsquash([f"lib/modules/{version}/{m}" for m in meta] + [f"boot/config-{version}"])
        directory = modules_dir(dest, version)
    except InitrdError:
        unsquash([f"usr/lib/modules/{version}/{m}" for m in meta])
        directory = modules_dir(dest, version)
    prefix = directory.relative_to(dest).as_posix()
    paths = resolve_modules(directory) + (resolve_modules(directory, extra) if extra else [])
    unsquash([f"{prefix}/{path}" for path in dict.fromkeys(paths)])
    return dest


def kernel_has_zstd(tree: Path, version: str) -> bool:
    """Whether the kernel unpacks zstd initramfs (CONFIG_RD_ZSTD=y); gzip otherwise."""
    try:
        config = (tree / "boot" / f"config-{version}").read_text()
    except OSError:
        return False
    return "\nCONFIG_RD_ZSTD=y\n" in f"\n{config}\n"


def compress(data: bytes, zstd: bool) -> bytes:
    if zstd and shutil.which("zstd"):
        cmd = ["zstd", "-19", "-q", "-c"]
        return subprocess.run(cmd, input=data, capture_output=True, check=True).stdout
    return gzip.compress(data, compresslevel=9, mtime=0)


def standalone_archive(image_tree: Path, kernel_version: str) -> cpio.Archive:
    archive = cpio.Archive()
    for directory in ("proc", "sys", "dev", "run", "tmp", "newroot", "bin", "sbin", "etc"):
        archive.directory(directory)
    archive.char_device("dev/console", 5, 1)
    archive.char_device("dev/null", 1, 3, 0o666)
    add_client_files(archive)
    archive.copy("init", client_file("init"), 0o755)
    archive.symlink("bin/sh", "/netboot/bin/busybox")
    add_modules(archive, image_tree, kernel_version)
    return archive


def build_standalone(image_tree: Path, kernel_version: str, output: Path) -> None:
    """Write standalone.img for kernel_version; image_tree holds lib/modules/VER/.

    Compressed with zstd when the image's kernel config says it can unpack it, else gzip.
    Blocking (runs zstd): call it from a worker thread in async code.
    """
    archive = standalone_archive(image_tree, kernel_version)
    data = compress(archive.to_bytes(), kernel_has_zstd(image_tree, kernel_version))
    write_atomically(output, data, replace=False)
