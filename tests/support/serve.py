"""Running `netboot serve` as a real process inside a test namespace."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from support.netns import NetNamespace

NETBOOT = [sys.executable, "-m", "netboot"]


class ServeProcess:
    """`netboot serve` in namespace `ns`; its stderr goes to `log_path`."""

    def __init__(
        self,
        ns: NetNamespace,
        root: Path,
        *,
        interface: str,
        address: str,
        http_port: int = 80,
        tftp_port: int = 69,
        dhcp: str = "proxy",
        config: Path | None = None,
        extra: tuple[str, ...] = (),
        log_path: Path,
    ) -> None:
        self.ns = ns
        self.address = address
        self.http_port = http_port
        self.log_path = log_path
        self.args = [
            *NETBOOT,
            "serve",
            "--interface",
            interface,
            "--address",
            address,
            "--root",
            str(root),
            "--http-port",
            str(http_port),
            "--tftp-port",
            str(tftp_port),
            "--dhcp",
            dhcp,
            *extra,
        ]
        if config is not None:
            after_serve = self.args.index("serve") + 1
            self.args[after_serve:after_serve] = ["--config", str(config)]
        self.proc: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://{self.address}:{self.http_port}"

    def start(self, timeout: float = 20) -> ServeProcess:
        self._log = open(self.log_path, "wb")  # closed in stop()
        self.proc = self.ns.popen(*self.args, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"netboot serve exited {self.proc.returncode}:\n{self.log()}")
            if "netboot serving" in self.log():
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"netboot serve did not start in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def curl(
        self, path: str, *args: str, ns: NetNamespace | None = None
    ) -> subprocess.CompletedProcess:
        """curl a path of this server, from `ns` (default: the server's own namespace)."""
        return (ns or self.ns).run(
            "curl", "-sS", "--max-time", "10", *args, self.base + path, check=False
        )

    def api(self, path: str) -> object:
        result = self.curl(path, "-f")
        if result.returncode != 0:
            raise RuntimeError(f"GET {path} failed: {result.stderr}")
        return json.loads(result.stdout)

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode
