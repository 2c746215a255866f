"""The real `netboot serve`, run inside the bed's server namespace, and its HTTP API.

The test process stays in the host namespace; it reaches the server's API with curl run
inside the server namespace, so no address ever leaves the bed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from vmbed.netns import SERVER_IF, TestNetwork, stop


def toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def write_config(
    path: Path,
    *,
    default_image: str,
    kernel_params: str,
    clients: dict[str, dict[str, str]] | None = None,
    client_defaults: dict[str, str] | None = None,
    extra: str = "",
) -> Path:
    """A server config: boot at once (no menu wait), serial console, per-client settings."""
    lines = [
        "[boot]",
        f"default_image = {toml_string(default_image)}",
        "menu_timeout = 0",
        f"kernel_params = {toml_string(kernel_params)}",
        "",
    ]
    if client_defaults or clients:
        lines.append("[clients]")
        for key, value in (client_defaults or {}).items():
            lines.append(f"{key} = {toml_string(value)}")
        lines.append("")
        for mac, settings in (clients or {}).items():
            lines.append(f"[clients.{toml_string(mac)}]")
            lines += [f"{key} = {toml_string(value)}" for key, value in settings.items()]
            lines.append("")
    path.write_text("\n".join(lines) + extra)
    return path


class NetbootServer:
    """`netboot serve` on the bed's server interface; SIGTERM stops it."""

    def __init__(
        self, net: TestNetwork, root: Path, config: Path, log: Path, dhcp: str = "proxy"
    ) -> None:
        self.net = net
        self.root = root
        self.config = config
        self.log = log
        self.dhcp = dhcp
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.net.server_ip}"

    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "netboot",
            "serve",
            "--config",
            str(self.config),
            "--interface",
            SERVER_IF,
            "--address",
            self.net.server_ip,
            "--root",
            str(self.root),
            "--http-port",
            "80",
            "--tftp-port",
            "69",
            "--dhcp",
            self.dhcp,
        ]

    def start(self, timeout: float = 30) -> NetbootServer:
        with open(self.log, "ab") as out:
            self.proc = self.net.popen(
                self.net.srv, self.argv(), stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"netboot serve exited ({self.proc.returncode}):\n{self.tail()}")
            if self._get("/api/clients") is not None:
                return self
            time.sleep(0.3)
        raise RuntimeError(f"netboot serve: HTTP not up within {timeout:.0f} s:\n{self.tail()}")

    def _get(self, path: str) -> str | None:
        result = self.net.run(
            self.net.srv, ["curl", "-sf", "--max-time", "5", f"{self.base_url}{path}"], timeout=15
        )
        return result.stdout if result.returncode == 0 else None

    def api(self, path: str) -> object | None:
        body = self._get(path)
        return None if body is None else json.loads(body)

    def client(self, mac: str) -> dict | None:
        record = self.api(f"/api/clients/{mac}")
        return record if isinstance(record, dict) else None

    def settings(self, mac: str) -> str | None:
        return self._get(f"/clients/{mac}")

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        """SIGTERM and wait: the exit code tells whether it stopped cleanly."""
        if self.proc is None:
            return None
        stop(self.proc, grace=15)
        return self.proc.returncode
