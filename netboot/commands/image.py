"""`netboot image`: build versioned squashfs images from chroots, VM disks or `/`.

Options follow `ltsp image` (-b, -c, -i, -k, -m, -r); settings come from the `[image]`
config section, and flags win. The build itself lives in `netboot.image.build`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from netboot import config as config_mod
from netboot import layout
from netboot.boot.grub import uses_grub
from netboot.commands.image_options import add_kernel_rule_flag, add_location_flags, image_config
from netboot.config_flags import add_key_flags, overrides
from netboot.image import publish
from netboot.image.build import BuildOutcome, BuildSettings, build_image
from netboot.image.errors import ImageError, os_errors_shown
from netboot.image.kernel import parse_rule
from netboot.image.mounts import enter_private_namespace
from netboot.image.signals import Interrupted, interrupts_raise
from netboot.image.sources import image_name, is_path, list_sources, parse_source
from netboot.image.squash import default_prefix, split_params

REQUIRED_TOOLS = ("mksquashfs", "unsquashfs", "mount", "umount", "blkid", "sfdisk")
MiB = 1024 * 1024


def _zero_or_one(text: str) -> int:
    if text not in ("0", "1"):
        raise argparse.ArgumentTypeError(f"expected 0 or 1, not {text!r}")
    return int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-b",
        "--backup",
        type=_zero_or_one,
        default=1,
        metavar="0|1",
        help="keep the old current version as 'previous' (default 1)",
    )
    parser.add_argument(
        "-c",
        "--cleanup",
        type=_zero_or_one,
        default=1,
        metavar="0|1",
        help="build from an overlay without user accounts, host keys and logs (default 1)",
    )
    parser.add_argument(
        "-i",
        "--ionice",
        metavar="CMD",
        help="command prefix for mksquashfs ('' for none; default: nice ionice -c3)",
    )
    add_kernel_rule_flag(parser)
    parser.add_argument(
        "-m",
        "--mksquashfs-params",
        dest="mksquashfs_params",
        metavar="PARAMS",
        help="extra mksquashfs parameters; a -comp here replaces the configured compression "
        "(write -m='-comp xz': a separate value starting with -b or -c reads as an option)",
    )
    parser.add_argument(
        "-r",
        "--revert",
        action="store_true",
        help="make 'previous' current again (and current previous)",
    )
    add_location_flags(parser)
    parser.add_argument(
        "sources",
        nargs="*",
        metavar="SOURCE",
        help="NAME (BASE/NAME/ or BASE/NAME.img), a path, or / ; parts joined by ',,'",
    )
    add_key_flags(
        parser,
        ("image",),
        taken=("image.base_dir", "image.mksquashfs_params", "image.ionice"),
    )


def merge_params(configured: list[str], extra: list[str]) -> list[str]:
    """Configured mksquashfs params followed by -m's; when -m picks a compressor, the
    configured one and its -X options are dropped (mksquashfs refuses two -comp)."""
    if "-comp" not in extra:
        return configured + extra
    kept: list[str] = []
    skipping = False
    for token in configured:
        if token == "-comp":
            skipping = True
            continue
        if skipping and (token.startswith("-X") or not token.startswith("-")):
            continue
        skipping = False
        kept.append(token)
    return kept + extra


def _settings(args: argparse.Namespace, config: config_mod.Config) -> BuildSettings:
    image = config.image
    if args.kernel_initrd:
        parse_rule(args.kernel_initrd)  # a bad -k fails now, not after mksquashfs
    params = split_params(image.mksquashfs_params, "image.mksquashfs_params")
    if args.mksquashfs_params:
        params = merge_params(params, split_params(args.mksquashfs_params, "-m"))
    if args.ionice is not None:
        prefix = split_params(args.ionice, "-i")
    elif image.ionice:
        prefix = split_params(image.ionice, "image.ionice")
    else:
        prefix = default_prefix()
    return BuildSettings(
        root=config.root,
        cleanup=bool(args.cleanup),
        backup=bool(args.backup),
        params=params,
        prefix=prefix,
        kernel_regex=args.kernel_initrd or None,
        excludes_add=list(image.excludes_add),
        excludes_remove=list(image.excludes_remove),
        keep_versions=image.keep_versions,
        in_use_days=image.in_use_days,
        base_dir=Path(image.base_dir),
    )


def _check_can_build() -> None:
    if os.geteuid() != 0:
        raise ImageError("must run as root (it mounts image sources and loop devices)")
    for tool in REQUIRED_TOOLS:
        if shutil.which(tool) is None:
            package = "squashfs-tools" if "squashfs" in tool else "util-linux/fdisk"
            raise ImageError(f"{tool} not found; install {package}")


def _report(outcome: BuildOutcome) -> str:
    squash = outcome.squash
    size = f"{squash.size / MiB:.1f} MiB"
    if squash.uncompressed:
        ratio = 100 * squash.size / squash.uncompressed
        size += f" ({ratio:.0f}% of {squash.uncompressed / MiB:.1f} MiB)"
    kernel = outcome.kernel.version or "unknown version"
    if outcome.kernel.initrd:
        initrd = ""
    elif (outcome.directory / layout.STANDALONE_INITRD).is_file():
        initrd = f", {layout.STANDALONE_INITRD}"
    else:
        initrd = ", no initrd"
    return (
        f"netboot image: {outcome.name} {outcome.version} published: {size}, "
        f"kernel {kernel}{initrd}, {squash.seconds:.1f} s"
    )


def _revert(args: argparse.Namespace, root: Path) -> int:
    if not args.sources:
        raise ImageError("-r needs the image(s) to revert")
    for spec in args.sources:
        first = spec.split(",", 1)[0]
        name = image_name(first) if is_path(first) else first
        image_dir = layout.image_dir(root, name)
        with publish.image_lock(image_dir):
            current, previous = publish.revert(image_dir)
        print(f"netboot image: {name}: current is {current}, previous is {previous or '-'}")
    return 0


def _warn_unsigned(outcome: BuildOutcome) -> None:
    """One line when Secure Boot clients of the GRUB loader would refuse this kernel."""
    from netboot.image.signature import kernel_signed

    signed = kernel_signed(outcome.directory / layout.KERNEL)
    if signed is False:
        print(
            f"netboot image: warning: {outcome.name} {outcome.version}: the kernel is not "
            "signed: GRUB-loader clients with Secure Boot on will refuse it "
            "('bad shim signature'); published anyway (docs/secure-boot.md)",
            file=sys.stderr,
        )
    elif signed is None:
        print(f"netboot image: {outcome.name}: kernel signature not checked "
              "(install sbsigntool)", file=sys.stderr)  # fmt: skip


def _build_all(
    args: argparse.Namespace, settings: BuildSettings, base_dir: Path, check_signed: bool
) -> int:
    _check_can_build()
    specs = args.sources or list_sources(base_dir)
    if not specs:
        raise ImageError(f"no image sources under {base_dir}; name one (e.g. / for this system)")
    sources = [parse_source(spec, base_dir) for spec in specs]
    enter_private_namespace()
    with interrupts_raise("nothing published, the old version still serves"):
        needs_addon = False
        for source in sources:
            print(f"netboot image: building {source.name} from {source.spec}", file=sys.stderr)
            try:
                outcome = build_image(source, settings)
            except Interrupted:
                raise
            except ImageError as exc:
                raise ImageError(f"{source.name}: {exc}") from None
            print(_report(outcome), flush=True)
            if check_signed:
                _warn_unsigned(outcome)
            if outcome.pruned:
                print(
                    f"netboot image: {outcome.name}: removed old versions "
                    f"{', '.join(outcome.pruned)}",
                    file=sys.stderr,
                )
            if outcome.kept_in_use:
                print(
                    f"netboot image: {outcome.name}: kept old versions clients still use: "
                    f"{', '.join(outcome.kept_in_use)}",
                    file=sys.stderr,
                )
            needs_addon = needs_addon or outcome.kernel.initrd is not None
        if needs_addon:
            _refresh_addon(settings.root)
    return 0


def _refresh_addon(root: Path) -> None:
    """Rebuild the add-on initrd so it carries the modules of every published kernel (the
    image's initramfs may lack squashfs/overlay). The image is already published: a failure
    here is a warning that says what to run, not a failed build."""
    from netboot.image.addon import build_addon

    try:
        kernels = build_addon(root, root / layout.ADDON_INITRD)
    except (OSError, ImageError, subprocess.CalledProcessError) as exc:
        print(
            f"netboot image: warning: add-on initrd not refreshed ({exc}); run: netboot initrd",
            file=sys.stderr,
        )
        return
    print(
        f"netboot image: add-on initrd refreshed for kernels {', '.join(kernels) or '-'}",
        file=sys.stderr,
    )


def run(args: argparse.Namespace) -> int:
    config = image_config(args, overrides(args))
    base_dir = Path(config.image.base_dir)
    with os_errors_shown():
        if args.revert:
            return _revert(args, config.root)
        return _build_all(args, _settings(args, config), base_dir, uses_grub(config))
