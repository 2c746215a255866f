"""A userspace NFS server for the NFS boot method: nfs-ganesha (FSAL VFS) in the bed's
server namespace, exporting the served root read-only over NFSv4 on TCP 2049.

The kernel nfsd is not needed (and often not available in containers); NFSv4 needs no
portmapper, so no rpcbind runs either. Ganesha's complaints about the missing rpcbind,
D-Bus and Kerberos are expected and harmless. `Graceless` skips the 90 s grace period in
which a fresh server refuses to open files.

With `nfsv3=True` (LTSP clients: initramfs-tools' klibc nfsmount speaks NFSv3 only and asks
the portmapper where MOUNT and NFS are) it also serves NFSv3 over UDP and TCP, with an
rpcbind beside it. Both run in a mount namespace of their own with a private /run: rpcbind's
socket /run/rpcbind.sock, where ganesha registers, must not be the host's or another bed's.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from testbed.cleanup import stop_process
from vmbed.network import TestNetwork

GANESHA = "ganesha.nfsd"
NFS_PORT = 2049
# unshare: a mount namespace whose /run is a fresh tmpfs; rpcbind there, its pid written to
# $1; ganesha registers once rpcbind's socket is there (sh execs it: the Popen's pid)
RPCBIND_FIRST = [
    "unshare", "--mount", "--propagation", "private", "sh", "-euc",
    'mount -t tmpfs -o mode=0755 tmpfs /run; rpcbind -f & echo $! > "$1"; shift;'
    " for _ in $(seq 100); do [ -S /run/rpcbind.sock ] && break; sleep 0.1; done;"
    ' exec "$@"',
    "rpcbind-first",
]  # fmt: skip

CONFIG = """NFS_CORE_PARAM {{
    Protocols = {protocols};
    NFS_Port = {port};
    Bind_Addr = {address};
    Enable_NLM = false;
    Enable_RQUOTA = false;
    Enable_UDP = {udp};
}}
NFSV4 {{
    Graceless = true;
    RecoveryBackend = fs;
    RecoveryRoot = "{recovery}";
}}
NFS_KRB5 {{
    Active_krb5 = false;
}}
EXPORT {{
    Export_Id = 1;
    Path = "{export}";
    Pseudo = "{export}";
    Access_Type = RO;
    Squash = No_Root_Squash;
    Protocols = {protocols};
    Transports = {transports};
    SecType = sys;
    FSAL {{
        Name = VFS;
    }}
}}
LOG {{
    Default_Log_Level = EVENT;
}}
"""


def available() -> bool:
    return shutil.which(GANESHA) is not None


class GaneshaServer:
    """`ganesha.nfsd -F` in the server namespace; `stop()` sends SIGTERM."""

    def __init__(self, net: TestNetwork, export: Path, workdir: Path, nfsv3: bool = False) -> None:
        self.net = net
        self.export = export
        self.workdir = workdir
        self.nfsv3 = nfsv3
        self.rpcbind_pid = workdir / "rpcbind.pid"
        self.log = workdir / "ganesha.log"
        self.proc: subprocess.Popen | None = None

    def write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        recovery = self.workdir / "recovery"
        recovery.mkdir(exist_ok=True)
        config = self.workdir / "ganesha.conf"
        config.write_text(CONFIG.format(
            port=NFS_PORT, address=self.net.server_ip, recovery=recovery, export=self.export,
            protocols="3, 4" if self.nfsv3 else "4", udp=str(self.nfsv3).lower(),
            transports="UDP, TCP" if self.nfsv3 else "TCP",
        ))  # fmt: skip
        return config

    def start(self, timeout: float = 30) -> GaneshaServer:
        config = self.write_config()
        argv = [GANESHA, "-F", "-L", str(self.log), "-f", str(config),
                "-p", str(self.workdir / "ganesha.pid")]  # fmt: skip
        if self.nfsv3:
            argv = [*RPCBIND_FIRST, str(self.rpcbind_pid), *argv]
        with open(self.workdir / "ganesha.out", "ab") as out:
            self.proc = self.net.srv.popen(*argv, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{GANESHA} exited ({self.proc.returncode}):\n{self.tail()}")
            if self.listening() and "NFS SERVER INITIALIZED" in self.text():
                return self
            time.sleep(0.3)
        raise RuntimeError(f"{GANESHA}: not listening on {NFS_PORT} within {timeout:.0f} s:\n"
                           f"{self.tail()}")  # fmt: skip

    def listening(self) -> bool:
        result = self.net.srv.run("ss", "-Htln", f"sport = :{NFS_PORT}", check=False, timeout=30)
        return bool(result.stdout.strip())

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.text().splitlines()[-lines:])

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace=10)
        with contextlib.suppress(OSError, ValueError):
            # rpcbind outlives ganesha (its parent exec'd into it): stop it by its own pid
            os.kill(int(self.rpcbind_pid.read_text()), signal.SIGTERM)
