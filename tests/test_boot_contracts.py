"""Contracts of the boot layer that are easy to break without noticing: it never reaches
into a transport, and the kernel parameters it hands out are the ones the client reads."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from netboot.boot.cmdline import NETBOOT_PARAMS, netboot_cmdline

REPO = Path(__file__).resolve().parent.parent
BOOT = REPO / "netboot" / "boot"
TRANSPORTS = ("netboot.dhcp", "netboot.tftp", "netboot.http")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: resolve against the netboot.boot package
                package = ["netboot", "boot"][: 3 - node.level]
                module = ".".join([*package, module] if module else package)
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def test_boot_layer_imports_no_transport() -> None:
    # the checker sees a transport import where there is one
    assert "netboot.dhcp.packet" in imported_modules(REPO / "netboot" / "dhcp" / "facts.py")
    files = sorted(BOOT.glob("*.py"))
    assert files
    for path in files:
        bad = {
            name
            for name in imported_modules(path)
            if any(name == t or name.startswith(t + ".") for t in TRANSPORTS)
        }
        assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


def test_the_declared_kernel_parameters_are_the_ones_lib_sh_reads() -> None:
    lib = (REPO / "ipxe" / "initrd" / "lib.sh").read_text()
    body = lib.split("nb_parse_cmdline() {", 1)[1].split("\n}\n", 1)[0]
    read = set(re.findall(r"^\s*netboot\.([a-z0-9_]+)=\*\)", body, re.MULTILINE))
    assert read, "no netboot.* case lines found in nb_parse_cmdline"
    assert read == set(NETBOOT_PARAMS)


def test_an_undeclared_parameter_is_refused() -> None:
    try:
        netboot_cmdline({"server": "http://s", "tormam": 1})
    except KeyError as exc:
        assert "tormam" in str(exc)
    else:
        raise AssertionError("an undeclared parameter was accepted")
