"""What must not reach clients: user accounts, host keys, logs, and the exclude list.

Everything here edits the writable overlay on top of the source, never the source, and
resolves paths inside the image (an image's `etc/fstab -> /etc/fstab` symlink is left
alone rather than followed to the build host).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from netboot.image.tree import DirView, glob, resolve, resolve_file

# mksquashfs -wildcards patterns, relative to the image root. '*' skips dot files, hence
# the '.*' twins.
PSEUDO_EXCLUDES = ("dev/*", "proc/*", "sys/*", "run/*")
DEFAULT_EXCLUDES = (
    *PSEUDO_EXCLUDES,
    "tmp/*",
    "tmp/.*",
    "var/tmp/*",
    "var/tmp/.*",
    "home/*",
    "root/*",
    "root/.*",
    "media/*",
    "mnt/*",
    "srv/*",
    "cdrom/*",
    "lost+found/*",
    "swapfile",
    "var/swap",
    "etc/ssh/ssh_host_*",
    "etc/NetworkManager/system-connections/*",
    "etc/udev/rules.d/??-persistent-*.rules",
    "var/lib/apt/lists/*",
    "var/cache/apt/archives/*.deb",
    "var/cache/apt/archives/partial/*",
    "var/cache/apt/*.bin",
    "var/log/*.[1-9]",
    "var/log/*.gz",
    "var/log/*.old",
    "var/log/*/*",
    "var/crash/*",
    "var/backups/*",
    "var/mail/*",
    "var/spool/cron/*/*",
    "var/lib/sudo/*",
)
DEFAULT_UID_RANGE = (1000, 60000)
ACCOUNT_FILES = ("passwd", "shadow", "group", "gshadow", "subuid", "subgid")
TRUNCATED_FILES = ("etc/fstab", "var/cache/debconf/passwords.dat")


def excludes(cleanup: bool, add: list[str], remove: list[str]) -> list[str]:
    """The exclude patterns: the defaults (only pseudo filesystems without cleanup)
    minus `excludes_remove`, plus `excludes_add`."""
    base = DEFAULT_EXCLUDES if cleanup else PSEUDO_EXCLUDES
    kept = [p for p in base if p not in remove]
    return kept + [p for p in add if p not in kept]


def escape_wildcards(path: str) -> str:
    """A literal path as a mksquashfs -wildcards pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in path)


@dataclass
class CleanupReport:
    """What was removed, for the build's log line and the tests."""

    users: list[str]
    groups: list[str]
    ssh_keys: list[str]
    truncated: list[str]


def _login_range(view: DirView, low_key: str, high_key: str) -> tuple[int, int]:
    """UID_MIN/UID_MAX (or GID_*) from the image's login.defs, default 1000-60000."""
    low, high = DEFAULT_UID_RANGE
    real = resolve_file(view, "etc/login.defs")
    if real is None:
        return low, high
    for line in view.path(real).read_text(errors="replace").splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[1].isdigit():
            if fields[0] == low_key:
                low = int(fields[1])
            elif fields[0] == high_key:
                high = int(fields[1])
    return low, high


def _rewrite(view: DirView, rel: str, keep: Callable[[list[str]], list[str] | None]) -> None:
    """Filter a colon-separated account file in place (mode and owner kept); `keep` gets
    the fields of a line and returns them, possibly changed, or None to drop the line."""
    real = resolve_file(view, rel)
    if real is None:
        return
    fd = os.open(view.path(real), os.O_RDWR | os.O_NOFOLLOW)
    with os.fdopen(fd, "r+b") as f:
        lines = f.read().decode("utf-8", errors="surrogateescape").splitlines()
        out = []
        for line in lines:
            fields = line.split(":")
            if not line or line.startswith("#") or len(fields) < 2:
                out.append(line)
                continue
            kept = keep(fields)
            if kept is not None:
                out.append(":".join(kept))
        data = "".join(f"{line}\n" for line in out).encode("utf-8", errors="surrogateescape")
        f.seek(0)
        f.write(data)
        f.truncate()


def _accounts_in_range(view: DirView, rel: str, low: int, high: int, id_field: int) -> set[str]:
    real = resolve_file(view, rel)
    if real is None:
        return set()
    names = set()
    for line in view.path(real).read_text(errors="surrogateescape").splitlines():
        fields = line.split(":")
        if len(fields) > id_field and fields[id_field].isdigit():
            if low <= int(fields[id_field]) <= high:
                names.add(fields[0])
    return names


def _without(members: str, removed: set[str]) -> str:
    return ",".join(m for m in members.split(",") if m and m not in removed)


def remove_users(view: DirView) -> tuple[list[str], list[str]]:
    """Drop normal users (UID_MIN..UID_MAX) and groups (GID_MIN..GID_MAX) from passwd,
    shadow, group, gshadow, subuid, subgid and their '-' backups; removed users also
    leave the member lists of the groups that stay."""
    uid_low, uid_high = _login_range(view, "UID_MIN", "UID_MAX")
    gid_low, gid_high = _login_range(view, "GID_MIN", "GID_MAX")
    users = _accounts_in_range(view, "etc/passwd", uid_low, uid_high, 2)
    users |= _accounts_in_range(view, "etc/passwd-", uid_low, uid_high, 2)
    groups = _accounts_in_range(view, "etc/group", gid_low, gid_high, 2)
    groups |= _accounts_in_range(view, "etc/group-", gid_low, gid_high, 2)

    def drop_user(fields: list[str]) -> list[str] | None:
        return None if fields[0] in users else fields

    def drop_group(fields: list[str]) -> list[str] | None:
        if fields[0] in groups:
            return None
        if len(fields) >= 4:
            fields[3] = _without(fields[3], users)
        return fields

    def drop_gshadow(fields: list[str]) -> list[str] | None:
        if fields[0] in groups:
            return None
        for index in (2, 3):
            if len(fields) > index:
                fields[index] = _without(fields[index], users)
        return fields

    filters = {
        "passwd": drop_user,
        "shadow": drop_user,
        "subuid": drop_user,
        "subgid": drop_user,
        "group": drop_group,
        "gshadow": drop_gshadow,
    }
    for name in ACCOUNT_FILES:
        for rel in (f"etc/{name}", f"etc/{name}-"):
            _rewrite(view, rel, filters[name])
    return sorted(users), sorted(groups)


def remove_ssh_host_keys(view: DirView) -> list[str]:
    """Delete the host's ssh keys from the overlay (they are also excluded)."""
    removed = []
    real_dir = resolve(view, "etc/ssh")
    if real_dir is None:
        return removed
    for rel in glob(view, f"{real_dir}/ssh_host_*"):
        if view.kind(rel) in ("file", "link"):
            os.unlink(view.path(rel))
            removed.append(rel)
    return removed


def _truncate(view: DirView, real: str) -> None:
    # open+truncate through the overlay copies the file up first: the source is untouched
    fd = os.open(view.path(real), os.O_WRONLY | os.O_NOFOLLOW | os.O_TRUNC)
    os.close(fd)


def truncate_files(view: DirView) -> list[str]:
    """Empty the top-level /var/log files, etc/fstab and debconf's saved passwords."""
    truncated = []
    log_dir = resolve(view, "var/log")
    if log_dir is not None and view.kind(log_dir) == "dir":
        for name in sorted(view.listdir(log_dir)):
            rel = f"{log_dir}/{name}"
            if view.kind(rel) == "file" and os.path.getsize(view.path(rel)) > 0:
                _truncate(view, rel)
                truncated.append(rel)
    for rel in TRUNCATED_FILES:
        real = resolve_file(view, rel)
        if real is not None and os.path.getsize(view.path(real)) > 0:
            _truncate(view, real)
            truncated.append(real)
    return truncated


def reduce_printers(view: DirView) -> None:
    """CUPS printers.conf keeps only its comments, as in LTSP."""
    real = resolve_file(view, "etc/cups/printers.conf")
    if real is None:
        return
    fd = os.open(view.path(real), os.O_RDWR | os.O_NOFOLLOW)
    with os.fdopen(fd, "r+b") as f:
        kept = [line for line in f.read().splitlines(keepends=True) if line.startswith(b"#")]
        f.seek(0)
        f.write(b"".join(kept))
        f.truncate()


def clean(tree: Path) -> CleanupReport:
    """Run every cleanup step on a writable overlay of the image."""
    view = DirView(tree)
    users, groups = remove_users(view)
    keys = remove_ssh_host_keys(view)
    truncated = truncate_files(view)
    reduce_printers(view)
    return CleanupReport(users, groups, keys, truncated)
