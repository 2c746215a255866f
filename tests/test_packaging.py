"""A wheel install must carry every file of ipxe/ (templates, client scripts): netboot finds
them under <prefix>/share/netboot/ipxe when it is not run from a checkout."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_every_ipxe_file_is_installed_as_data() -> None:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    listed = {entry for files in data.values() for entry in files}
    present = {
        str(path.relative_to(REPO))
        for path in (REPO / "ipxe").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert present == listed
    for target, files in data.items():
        for entry in files:  # each lands in the folder matching its place under ipxe/
            assert target == "share/netboot/" + str(Path(entry).parent)
