"""One image build, start to finish: assemble, clean, squash, extract the kernel, publish.

Every step that takes something (a mount, a staging directory) has its undo in a
`finally`, so an error or a signal at any point leaves the old version serving and
nothing behind; a SIGKILL leaves only the staging directory, removed by the next build.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from netboot import layout
from netboot.image import cleanup, publish
from netboot.image.errors import ImageError
from netboot.image.kernel import KernelInfo, extract_kernel
from netboot.image.manifest import Manifest
from netboot.image.mounts import Mounts, assemble
from netboot.image.progress import Progress
from netboot.image.signals import DeferredInterrupts
from netboot.image.sources import Source
from netboot.image.squash import SquashResult, mksquashfs
from netboot.image.standalone import build_standalone, ensure_modules_dep

WORK_DIR = "work"
EXCLUDE_FILE = "excludes"


@dataclass(frozen=True)
class BuildSettings:
    root: Path
    cleanup: bool = True
    backup: bool = True
    params: list[str] = field(default_factory=list)
    prefix: list[str] = field(default_factory=list)
    kernel_regex: str | None = None
    excludes_add: list[str] = field(default_factory=list)
    excludes_remove: list[str] = field(default_factory=list)
    keep_versions: int = 3
    in_use_days: int = 30
    base_dir: Path | None = None


@dataclass(frozen=True)
class BuildOutcome:
    name: str
    version: str
    directory: Path
    squash: SquashResult
    kernel: KernelInfo
    pruned: list[str]
    kept_in_use: list[str] = field(default_factory=list)


def _inside(path: Path, directory: Path) -> str | None:
    """path relative to directory when it lies strictly inside it (both resolved)."""
    real, base = Path(os.path.realpath(path)), Path(os.path.realpath(directory))
    if real != base and base in real.parents:
        return real.relative_to(base).as_posix()
    return None


def exclude_patterns(source: Source, settings: BuildSettings) -> list[str]:
    """The configured excludes, plus the served root and base dir when the source
    contains them (chrootless builds of `/` must not swallow earlier images)."""
    patterns = cleanup.excludes(settings.cleanup, settings.excludes_add, settings.excludes_remove)
    first = source.parts[0].path
    if first.is_dir():
        for own in (settings.root, settings.base_dir):
            rel = _inside(own, first) if own is not None else None
            if rel:
                patterns.append(cleanup.escape_wildcards(rel))
    return patterns


def _describe(report: cleanup.CleanupReport | None) -> str:
    if report is None:
        return "no cleanup (-c 0)"
    users = ", ".join(report.users) or "none"
    return f"removed users: {users}; ssh host keys: {len(report.ssh_keys)}"


def _squash_tree(
    source: Source, settings: BuildSettings, staging: Path
) -> tuple[SquashResult, KernelInfo]:
    """Mount, clean, squash and extract the kernel; everything mounted is unmounted
    before this returns or raises."""
    mounts = Mounts()
    work = staging / WORK_DIR
    try:
        tree = assemble(source, work, settings.cleanup, mounts)
        report = cleanup.clean(tree) if settings.cleanup else None
        print(f"netboot image: {source.name}: {_describe(report)}", file=sys.stderr)
        exclude_file = work / EXCLUDE_FILE
        exclude_file.write_text("".join(f"{p}\n" for p in exclude_patterns(source, settings)))
        progress = Progress(source.name)
        try:
            squash = mksquashfs(
                tree,
                staging / layout.SQUASHFS,
                exclude_file,
                settings.params,
                settings.prefix,
                progress.update,
            )
        finally:
            progress.done()
        kernel = extract_kernel(tree, staging, settings.kernel_regex)
        if kernel.initrd is None:
            _standalone_initrd(tree, kernel, staging, source.name)
    except BaseException:
        with DeferredInterrupts(reraise=False):
            mounts.close()
        raise
    with DeferredInterrupts():
        problems = mounts.close()
    if problems:
        raise ImageError(problems[0])
    work.rmdir()
    return squash, kernel


def _standalone_initrd(tree: Path, kernel: KernelInfo, staging: Path, name: str) -> None:
    """An image without an initramfs of its own boots with netboot's standalone one, built
    from the image's own kernel modules while the tree is still mounted."""
    if not (tree / "lib" / "modules" / kernel.version).is_dir():
        print(
            f"netboot image: {name}: warning: no initramfs and no lib/modules/{kernel.version}"
            ": clients cannot boot it until it has one",
            file=sys.stderr,
        )
        return
    if ensure_modules_dep(tree, kernel.version):  # in the build overlay, not the source
        print(
            f"netboot image: {name}: lib/modules/{kernel.version} had no modules.dep:"
            " ran depmod -b for the standalone initramfs",
            file=sys.stderr,
        )
    build_standalone(tree, kernel.version, staging / layout.STANDALONE_INITRD)
    print(
        f"netboot image: {name}: no initramfs in the image: built {layout.STANDALONE_INITRD}"
        f" for {kernel.version}",
        file=sys.stderr,
    )


def build_image(source: Source, settings: BuildSettings) -> BuildOutcome:
    """Build and publish one image; raises ImageError (or Interrupted) with nothing
    published and nothing left mounted."""
    with publish.publication(layout.image_dir(settings.root, source.name)) as staged:
        squash, kernel = _squash_tree(source, settings, staged.staging)
        squashfs = staged.staging / layout.SQUASHFS
        os.chmod(squashfs, 0o644)
        manifest = Manifest(
            name=source.name,
            version=staged.version,
            size=squash.size,
            sha256=publish.sha256_file(squashfs),
            kernel_version=kernel.version,
            kernel=kernel.kernel_source,
            initrd=kernel.initrd_source,
            standalone_initrd=(staged.staging / layout.STANDALONE_INITRD).is_file(),
            source=source.spec,
            cleanup=settings.cleanup,
            mksquashfs_params=tuple(settings.params),
        )
        directory = staged.commit(
            manifest, settings.backup, settings.keep_versions, settings.in_use_days
        )
    return BuildOutcome(
        source.name, staged.version, directory, squash, kernel, staged.pruned, staged.kept_in_use
    )
