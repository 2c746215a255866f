"""`netboot doctor`: what on this host and LAN would keep clients from booting.

Each check returns `Finding`s: one line each, saying what is wrong and what to do. `network`
looks at the interface and the other DHCP servers, `ports` at sockets and firewall rules,
`files` at the iPXE binaries, the published images and the disk, `secure_boot` at shim and GRUB
and the next-server GRUB reads (loader grub only).
"""

from __future__ import annotations

from dataclasses import dataclass

OK, NOTE, PROBLEM = "ok", "note", "PROBLEM"


@dataclass(frozen=True)
class Finding:
    """One line of the report; `fix` says what to do (empty when all is well)."""

    level: str
    text: str
    fix: str = ""

    def line(self) -> str:
        return f"{self.level:<8} {self.text}" + (f": {self.fix}" if self.fix else "")


def ok(text: str) -> Finding:
    return Finding(OK, text)


def note(text: str, fix: str = "") -> Finding:
    return Finding(NOTE, text, fix)


def problem(text: str, fix: str) -> Finding:
    return Finding(PROBLEM, text, fix)
