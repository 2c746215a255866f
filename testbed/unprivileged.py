"""Running netboot as an unprivileged user, the way its systemd unit does.

`system_venv` makes a venv of /usr/bin/python3 in a world-readable directory whose .pth
points at this checkout and at the test venv's site-packages (the test venv's own interpreter
may be a pyenv build under /root, which another user cannot run). `as_service_user` is the
setpriv prefix that gives a command the unit's user and ambient capabilities.
"""

from __future__ import annotations

import shutil
import subprocess
import sysconfig
import tempfile
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"
CHECKOUT = Path(__file__).resolve().parent.parent
CAPS = "+net_bind_service,+net_raw"


def world_readable_dir(prefix: str) -> Path:
    """A fresh directory under /tmp that any user can enter (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


def system_venv(directory: Path) -> Path:
    """A venv of the system Python in `directory` that imports this checkout; its python."""
    venv = directory / "venv"
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python3"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    ours = sysconfig.get_paths()["purelib"]
    (Path(site) / "netboot-test.pth").write_text(f"{CHECKOUT}\n{ours}\n")
    return python


def as_service_user(user: str = "nobody", group: str = "nogroup") -> list[str]:
    """setpriv: this user, no supplementary groups, NET_BIND_SERVICE and NET_RAW ambient."""
    return [
        "setpriv", f"--reuid={user}", f"--regid={group}", "--clear-groups",
        f"--inh-caps={CAPS}", f"--ambient-caps={CAPS}",
    ]  # fmt: skip


def remove(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
