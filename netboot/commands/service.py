"""`netboot service install`: run netboot as a systemd service under its own user.

Creates the system user, the served root and state directory owned by it, the config file if
there is none, and the unit (`systemd/netboot.service` with this interpreter, user and served
root filled in). The interpreter must be usable by that user with the unit's sandbox
(ProtectHome: nothing under /home or /root): a pyenv build in /root is refused with what to do
instead, rather than installing a unit that cannot start.
"""

from __future__ import annotations

import argparse
import grp
import os
import pwd
import re
import shutil
import subprocess
import sys
from pathlib import Path

from netboot import config as config_mod
from netboot import resources
from netboot.atomic import write_atomically
from netboot.errors import UserError

UNIT_NAME = "netboot.service"
UNIT_DIR = Path("/etc/systemd/system")
STATE_DIR = Path("/var/lib/netboot")  # the unit's StateDirectory=netboot
HIDDEN_BY_PROTECT_HOME = (Path("/root"), Path("/home"), Path("/run/user"))
IMPORTS = "import netboot, aiohttp, scapy, tftpy, netifaces; print(netboot.__file__)"
VENV_HINT = (
    "install netboot into a venv of the system Python the service user can read, e.g. "
    "`/usr/bin/python3 -m venv /opt/netboot && /opt/netboot/bin/pip install /path/to/netboot`, "
    "then run `/opt/netboot/bin/netboot service install`"
)
NEW_CONFIG = """\
# netboot configuration (every key: netboot/config.py SCHEMA; docs/operations.md)
[server]
root = "{root}"
dhcp = "proxy"    # "full" to hand out addresses too (docs/dhcp.md)
# interface = "eth0"
"""


class ServiceError(UserError):
    """The service cannot be installed as asked; exit 1."""

    exit_code = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["install"], help="install the systemd service")
    parser.add_argument("--user", default="netboot", help="service user (default netboot)")
    parser.add_argument(
        "--python", type=Path, default=Path(sys.executable), help="interpreter (default: this)"
    )
    parser.add_argument(
        "--config", type=Path, default=config_mod.DEFAULT_CONFIG_FILE, help="config file"
    )
    parser.add_argument("--root", type=Path, help="served root (default: server.root)")
    parser.add_argument("--unit-dir", type=Path, default=UNIT_DIR, help=argparse.SUPPRESS)
    parser.add_argument("--state-dir", type=Path, default=STATE_DIR, help=argparse.SUPPRESS)


def unit_text(
    template: str, *, python: Path, config: Path, user: str, group: str, writable: list[Path]
) -> str:
    """The shipped unit with this interpreter, config, user and writable paths."""
    values = {
        "ExecStart": f"{python} -m netboot serve --config {config}",
        "User": user,
        "Group": group,
        "ReadWritePaths": " ".join(str(p) for p in writable),
    }
    for key, value in values.items():
        template, count = re.subn(rf"(?m)^{key}=.*$", f"{key}={value}", template)
        if count != 1:
            raise ServiceError(f"the unit template has no single {key}= line")
    return template


def ensure_user(user: str, home: Path) -> str:
    """Create the system user (and its group) if missing; returns what was done."""
    try:
        pwd.getpwnam(user)
        return f"user {user} exists"
    except KeyError:
        pass
    if shutil.which("useradd") is None:
        raise ServiceError(f"no user {user} and no useradd to create it")
    subprocess.run(
        ["useradd", "--system", "--user-group", "--home-dir", str(home), "--no-create-home",
         "--shell", "/usr/sbin/nologin", user],
        check=True, capture_output=True,
    )  # fmt: skip
    return f"created system user {user}"


def check_interpreter(python: Path, user: str) -> None:
    """Refuse an interpreter the service user cannot run netboot with."""
    result = subprocess.run(
        ["setpriv", f"--reuid={user}", f"--regid={group_of(user)}", "--clear-groups",
         str(python), "-c", IMPORTS],
        capture_output=True, text=True, cwd="/", env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["failed"])[-1]
        raise ServiceError(f"user {user} cannot run netboot with {python} ({last}): {VENV_HINT}")
    package = Path(result.stdout.strip())
    for path in (python.resolve(), package):
        if any(path.is_relative_to(hidden) for hidden in HIDDEN_BY_PROTECT_HOME):
            raise ServiceError(
                f"{path} is under /root or /home, hidden from the service (ProtectHome): "
                + VENV_HINT
            )


def group_of(user: str) -> str:
    return grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name


def owned_dir(path: Path, user: str, mode: int = 0o755) -> None:
    path.mkdir(parents=True, exist_ok=True)
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    path.chmod(mode)


def run(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        raise ServiceError("run as root: it creates a user, directories and a unit")
    steps = [ensure_user(args.user, args.state_dir)]
    check_interpreter(args.python, args.user)
    config_file: Path = args.config
    if config_file.exists():
        config = config_mod.load(config_file)
        root = args.root or config.root
        steps.append(f"kept {config_file}")
    else:
        root = args.root or Path(config_mod.defaults().server.root)
        text = NEW_CONFIG.format(root=root)
        write_atomically(config_file, text.encode(), replace=False)
        config = config_mod.load(config_file)
        steps.append(f"wrote {config_file}")
    writable = [root]
    if config.tftp_root != config.root:
        writable.append(config.tftp_root)
    lease_dir = Path(config.dhcp.lease_file).parent
    if not lease_dir.is_relative_to(STATE_DIR):  # else systemd makes it (StateDirectory)
        writable.append(lease_dir)
    for path in writable:
        owned_dir(path, args.user)
    owned_dir(root / "images", args.user)
    owned_dir(config.tftp_root / "ipxe", args.user)
    owned_dir(args.state_dir, args.user, 0o750)
    steps.append(f"{', '.join(str(p) for p in writable)} and {args.state_dir} owned by {args.user}")
    template = (resources.systemd_dir() / UNIT_NAME).read_text()
    unit = unit_text(
        template,
        python=args.python,
        config=config_file,
        user=args.user,
        group=group_of(args.user),
        writable=writable,
    )
    unit_path = args.unit_dir / UNIT_NAME
    write_atomically(unit_path, unit.encode())
    steps.append(f"wrote {unit_path}")
    if Path("/run/systemd/system").is_dir() and args.unit_dir == UNIT_DIR:
        subprocess.run(["systemctl", "daemon-reload"], check=True)
        steps.append("start it: systemctl enable --now netboot")
    else:
        steps.append("systemd is not running here: the unit is written but not loaded")
    for step in steps:
        print(f"netboot service: {step}")
    return 0
