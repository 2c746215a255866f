"""`netboot serve` run as a real process inside a test namespace, and its HTTP API."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from testbed import cleanup
from testbed.cli import NETBOOT
from testbed.netns import Namespace

READY = "netboot serving"


class ServeProcess:
    """`netboot serve` in namespace `ns`; its output goes to `log_path`.

    A flag whose value is None is left out, so the config file or the built-in default
    applies; SIGTERM (`stop()`) must end it with exit code 0.
    """

    def __init__(
        self,
        ns: Namespace,
        root: Path | None,
        *,
        log_path: Path,
        interface: str | None = None,
        address: str | None = None,
        http_port: int | None = 80,
        tftp_port: int | None = 69,
        dhcp: str | None = "proxy",
        config: Path | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.ns = ns
        self.address = address
        self.http_port = http_port
        self.log_path = log_path
        flags = {
            "--config": config,
            "--interface": interface,
            "--address": address,
            "--root": root,
            "--http-port": http_port,
            "--tftp-port": tftp_port,
            "--dhcp": dhcp,
        }
        self.args = [*NETBOOT, "serve"]
        for flag, value in flags.items():
            if value is not None:
                self.args += [flag, str(value)]
        self.args += extra
        self.proc: subprocess.Popen | None = None
        self._cleanup_id = 0

    @property
    def base(self) -> str:
        return f"http://{self.address}:{self.http_port}"

    def launch(self) -> ServeProcess:
        """Start the process without waiting for it to be ready."""
        with open(self.log_path, "wb") as log:  # the child keeps its own copy
            self.proc = self.ns.popen(*self.args, stdout=log, stderr=subprocess.STDOUT)
        proc = self.proc
        self._cleanup_id = cleanup.register(lambda: cleanup.stop_process(proc, grace=3))
        return self

    def start(self, timeout: float = 20) -> ServeProcess:
        """Start and wait until it says it serves (every service is listening by then)."""
        self.launch()
        if self.wait_for(READY, timeout) is None:
            raise RuntimeError(f"netboot serve exited {self.proc.returncode}:\n{self.log()}")
        return self

    def wait_for(self, text: str, timeout: float = 20) -> str | None:
        """The first log line holding `text`; None if the process ends without writing it."""
        assert self.proc is not None, "not launched"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            exited = self.proc.poll() is not None
            line = next((line for line in self.log().splitlines() if text in line), None)
            if line is not None or exited:
                return line
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"netboot serve: no {text!r} within {timeout:.0f} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def curl(
        self, path: str, *args: str, ns: Namespace | None = None
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

    def client(self, mac: str) -> dict | None:
        """The server's record of one client; None if it has none (or cannot answer)."""
        try:
            record = self.api(f"/api/clients/{mac}")
        except RuntimeError:
            return None
        return record if isinstance(record, dict) else None

    def settings(self, mac: str) -> str | None:
        """The client settings file a booting client fetches; None if there is none."""
        result = self.curl(f"/clients/{mac}", "-f")
        return result.stdout if result.returncode == 0 else None

    def stop(self) -> int | None:
        """SIGTERM and wait; the exit code (None if never started)."""
        if self.proc is None:
            return None
        cleanup.stop_process(self.proc, grace=15)
        cleanup.done(self._cleanup_id)
        return self.proc.returncode


def serve_on(ns: Namespace, root: Path, address: str, log_path: Path, **flags) -> ServeProcess:
    """`netboot serve` started on the test bed's server interface (`vsrv`) of `ns`; `flags`
    as ServeProcess takes them (dhcp, config, extra)."""
    return ServeProcess(ns, root, interface="vsrv", address=address, log_path=log_path,
                        **flags).start()  # fmt: skip
