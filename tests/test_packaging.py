"""A wheel install must carry every file of ipxe/ (templates, client scripts): netboot finds
them under <prefix>/share/netboot/ipxe when it is not run from a checkout."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_every_ipxe_file_is_installed_as_data() -> None:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    listed = {entry for files in data.values() for entry in files if entry.startswith("ipxe/")}
    present = {
        str(path.relative_to(REPO))
        for path in (REPO / "ipxe").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert present == listed
    for target, files in data.items():
        for entry in files:  # each lands in the folder matching its place (ipxe/, systemd/)
            assert target == "share/netboot/" + str(Path(entry).parent)


def test_the_status_page_is_package_data() -> None:
    """netboot/web/static/ is read with importlib.resources: every file there must be listed."""
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = data["package-data"]["netboot.web"]
    static = REPO / "netboot" / "web"
    present = {p for p in static.rglob("*") if p.is_file() and p.parent.name == "static"}
    covered = {p for pattern in patterns for p in static.glob(pattern)}
    assert present and present == covered


def test_the_systemd_unit_is_installed_as_data() -> None:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    assert data["share/netboot/systemd"] == ["systemd/netboot.service"]
    assert (REPO / "systemd" / "netboot.service").is_file()
