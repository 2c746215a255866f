"""Compare squashfs compressors on a real tree: build time, size, and read-back time.

    python bench/image_build.py [TREE] [--processors N]

Read-back (unsquashfs of the whole image; with --drop-caches, page caches are dropped
first, which slows everyone else on the machine for a moment) is what a booting client
pays in decompression; build time is what the administrator waits for.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

COMPRESSORS = {
    "gzip (mksquashfs default)": ["-comp", "gzip"],
    "xz": ["-comp", "xz"],
    "zstd -Xcompression-level 15 -b 1M (netboot)": [
        "-comp",
        "zstd",
        "-Xcompression-level",
        "15",
        "-b",
        "1M",
    ],
    "zstd -Xcompression-level 19 -b 1M": ["-comp", "zstd", "-Xcompression-level", "19", "-b", "1M"],
    "lz4": ["-comp", "lz4"],
}


def tree_size(tree: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(tree):
        for name in files:
            path = Path(dirpath) / name
            if not path.is_symlink():
                total += path.stat().st_size
    return total


def drop_caches(enabled: bool) -> None:
    if enabled and os.geteuid() == 0:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tree", nargs="?", default="/usr/lib/python3.11", type=Path)
    parser.add_argument("--processors", type=int, default=2)
    parser.add_argument("--drop-caches", action="store_true", help="drop page caches (root)")
    args = parser.parse_args()
    raw = tree_size(args.tree)
    print(f"tree {args.tree}: {raw / 2**20:.1f} MiB, {args.processors} processors")
    print(f"{'compressor':46} {'build s':>8} {'MiB':>7} {'ratio':>6} {'read s':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "i.sqfs"
        for label, params in COMPRESSORS.items():
            started = time.monotonic()
            subprocess.run(
                ["mksquashfs", str(args.tree), str(image), "-noappend", "-no-progress",
                 "-quiet", "-processors", str(args.processors), *params],
                check=True,
            )  # fmt: skip
            build = time.monotonic() - started
            size = image.stat().st_size
            drop_caches(args.drop_caches)
            started = time.monotonic()
            subprocess.run(
                ["unsquashfs", "-no-progress", "-processors", str(args.processors), "-d",
                 str(Path(tmp) / "out"), str(image)],
                check=True, capture_output=True,
            )  # fmt: skip
            read = time.monotonic() - started
            subprocess.run(["rm", "-rf", str(Path(tmp) / "out")], check=True)
            print(
                f"{label:46} {build:8.1f} {size / 2**20:7.1f} {100 * size / raw:5.1f}% {read:7.2f}"
            )


if __name__ == "__main__":
    main()
