"""QEMU PXE clients (TCG: KVM breaks the firmware on these machines) on a tap of the test LAN.

The serial console goes to a file that the test polls for marker lines; every wait has a
timeout and a timeout error carries the console tail.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from testbed.cleanup import stop_process
from vmbed.network import TestNetwork

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
# Secure Boot: the SMM build of OVMF and variables enrolled with Microsoft's keys (shim is
# signed by Microsoft's UEFI CA); q35 with SMM, the flash write-protected from the OS
OVMF_CODE_SECBOOT = Path("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd")
OVMF_VARS_MS = Path("/usr/share/OVMF/OVMF_VARS_4M.ms.fd")
AAVMF_CODE = Path("/usr/share/AAVMF/AAVMF_CODE.fd")
AAVMF_VARS = Path("/usr/share/AAVMF/AAVMF_VARS.fd")
AAVMF_VARS_MS = Path("/usr/share/AAVMF/AAVMF_VARS.ms.fd")
SECURE_BOOT_MACHINE = ["-machine", "q35,smm=on", "-global",
                       "driver=cfi.pflash01,property=secure,value=on"]  # fmt: skip
# UEFI HTTP Boot at once: OVMF (2022.11 and later) reads these fw_cfg knobs and then offers no
# PXEv4/PXEv6 boot options, so its first network boot option is "UEFI HTTPv4". Without them it
# tries HTTP Boot only after PXEv4 and PXEv6 both timed out (about 3 minutes).
HTTP_BOOT_ONLY = ["-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=n",
                  "-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=n"]  # fmt: skip


class BootTimeout(AssertionError):
    """A client did not print what was expected in time."""


@dataclass(frozen=True)
class ClientSpec:
    """What kind of machine: firmware, NIC model and whether the NIC keeps its option ROM.

    bios (any NIC): SeaBIOS runs QEMU's own iPXE ROM, which asks for the script directly.
    uefi + virtio without ROM: OVMF's own driver and native PXE fetch the EFI iPXE binary over
    TFTP, then iPXE takes over. OVMF has no e1000 driver of its own, so a UEFI e1000 keeps
    QEMU's EFI iPXE ROM, and that iPXE boots straight away, like the BIOS ROM (no TFTP step).
    """

    firmware: str  # "bios" | "uefi"
    nic: str  # "virtio-net-pci" | "e1000"
    mac: str
    memory_mb: int = 512
    secure_boot: bool = False  # uefi only: OVMF with Secure Boot on and Microsoft's keys
    cpu: str = "x86_64"  # or "arm64": qemu-system-aarch64, virt machine, AAVMF (uefi only)
    http_boot: bool = False  # uefi + virtio without ROM: UEFI HTTP Boot, PXE switched off

    @property
    def keeps_rom(self) -> bool:
        return self.firmware == "bios" or self.nic != "virtio-net-pci"

    @property
    def native_pxe(self) -> bool:
        """The firmware's own PXE fetches iPXE over TFTP (QEMU's NIC ROMs are iPXE already)."""
        return self.firmware == "uefi" and not self.keeps_rom and not self.http_boot


class QemuClient:
    """One VM: start it, wait for console lines, stop it."""

    def __init__(self, net: TestNetwork, spec: ClientSpec, workdir: Path, name: str) -> None:
        self.net = net
        self.spec = spec
        self.workdir = workdir
        self.name = name
        self.console = workdir / f"{name}.serial.log"
        self.tap: str | None = None
        self.proc: subprocess.Popen | None = None
        self.started = 0.0

    def argv(self, tap: str) -> list[str]:
        spec = self.spec
        device = f"{spec.nic},netdev=n0,mac={spec.mac},bootindex=1"
        if not spec.keeps_rom:
            device += ",romfile="
        arm64 = spec.cpu == "arm64"
        argv = [
            "qemu-system-aarch64" if arm64 else "qemu-system-x86_64",
            *(["-M", "virt", "-cpu", "cortex-a57"] if arm64 else []),
            "-accel",
            "tcg",
            "-m",
            str(spec.memory_mb),
            "-nographic",
            "-nodefaults",
            "-serial",
            "stdio",
            "-no-reboot",
            "-boot",
            "n",
            "-netdev",
            f"tap,id=n0,ifname={tap},script=no,downscript=no",
            "-device",
            device,
        ]
        if spec.firmware == "uefi":
            code, variables = self.firmware_files()
            if spec.secure_boot and not arm64:
                argv += SECURE_BOOT_MACHINE
            if spec.http_boot:
                argv += HTTP_BOOT_ONLY
            vars_copy = self.workdir / f"{self.name}.vars.fd"
            shutil.copyfile(variables, vars_copy)
            argv += [
                "-drive",
                f"if=pflash,format=raw,readonly=on,file={code}",
                "-drive",
                f"if=pflash,format=raw,file={vars_copy}",
            ]
        return argv

    def firmware_files(self) -> tuple[Path, Path]:
        """UEFI code and the variables to copy: OVMF or AAVMF, with Microsoft's keys enrolled
        for Secure Boot (AAVMF's code is the same for both; its `.ms` vars turn SB on)."""
        secure = self.spec.secure_boot
        if self.spec.cpu == "arm64":
            return AAVMF_CODE, AAVMF_VARS_MS if secure else AAVMF_VARS
        return (OVMF_CODE_SECBOOT, OVMF_VARS_MS) if secure else (OVMF_CODE, OVMF_VARS)

    def start(self) -> QemuClient:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.tap = self.net.add_tap()
        with open(self.console, "wb") as out:
            self.proc = self.net.lan.popen(
                *self.argv(self.tap), stdout=out, stderr=subprocess.STDOUT
            )
        self.started = time.monotonic()
        return self

    def text(self) -> str:
        try:
            raw = self.console.read_bytes()
        except OSError:
            return ""
        # iPXE and the firmware paint with ANSI escapes and CRs; keep the words
        text = raw.decode("utf-8", "replace").replace("\r", "")
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.text().splitlines()[-lines:])

    def wait_for(self, pattern: str, timeout: float, after: int = 0) -> re.Match:
        """The first match of `pattern` in the console (from offset `after`) within `timeout`."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.text(), after)
            if match:
                return match
            if self.proc is not None and self.proc.poll() is not None:
                raise BootTimeout(
                    f"{self.name}: QEMU exited ({self.proc.returncode}) before {pattern!r}\n"
                    f"--- console tail ---\n{self.tail()}"
                )
            if time.monotonic() > deadline:
                raise BootTimeout(
                    f"{self.name}: no {pattern!r} within {timeout:.0f} s\n"
                    f"--- console tail ---\n{self.tail()}"
                )
            time.sleep(0.5)

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise BootTimeout(f"{self.name}: still running after {timeout:.0f} s") from exc

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace=3)
        if self.tap is not None:
            self.net.remove_tap(self.tap)
            self.tap = None
