"""udp-receiver for the client initrds, bundled the way initramfs-tools' copy_exec does it:
the binary plus the libraries `ldd` lists on the build host, and that host's loader.

lib.sh runs it as `/netboot/lib/ld.so --library-path /netboot/lib /netboot/bin/udp-receiver`:
our files go under /netboot only, so they never replace or mix with the image's own glibc
(the add-on is unpacked over the image's initramfs).
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from pathlib import Path

from netboot.image import cpio
from netboot.image.errors import ImageError

log = logging.getLogger("netboot.image.receiver")


class ReceiverError(ImageError):
    """udp-receiver's libraries could not be listed."""


UDP_RECEIVER = "udp-receiver"
# ldd lines: "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" and the loader's
# "/lib64/ld-linux-x86-64.so.2 (0x...)"
LDD_PATH = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)")


def shared_libraries(binary: Path) -> tuple[Path, list[Path]]:
    """(loader, libraries) a dynamic binary needs, as `ldd` on the build host lists them
    (the way initramfs-tools' copy_exec decides). Raises ReceiverError when ldd cannot."""
    try:
        out = subprocess.run(
            ["ldd", str(binary)], capture_output=True, text=True, check=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise ReceiverError(f"ldd {binary} failed: {exc}") from None
    loader = None
    libraries = []
    for line in out.splitlines():
        match = LDD_PATH.search(line)
        if match is None:
            continue
        path = Path(match.group(1))
        if "=>" not in line:  # only the loader is listed without a name
            loader = path
        else:
            libraries.append(path)
    if loader is None:
        raise ReceiverError(f"ldd {binary}: no dynamic loader listed")
    return loader, libraries


def add_udp_receiver(archive: cpio.Archive) -> bool:
    """/netboot/bin/udp-receiver with its own loader (/netboot/lib/ld.so) and libraries,
    for `netboot.transfer=multicast`. False (and a warning) when udpcast is not installed
    on the build host: clients then fall back to HTTP."""
    found = shutil.which(UDP_RECEIVER)
    if found is None:
        log.warning(
            "%s not installed (package udpcast): multicast clients will use HTTP", UDP_RECEIVER
        )
        return False
    binary = Path(found).resolve()
    try:
        loader, libraries = shared_libraries(binary)
    except ReceiverError as exc:
        log.warning("cannot bundle %s: %s", UDP_RECEIVER, exc)
        return False
    archive.copy(f"netboot/bin/{UDP_RECEIVER}", binary, 0o755)
    archive.copy("netboot/lib/ld.so", loader.resolve(), 0o755)
    for library in libraries:
        archive.copy(f"netboot/lib/{library.name}", library.resolve(), 0o755)
    return True
