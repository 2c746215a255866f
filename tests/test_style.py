"""The project's own style rule, enforced where CI looks: ruff check and ruff format clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", *args], cwd=REPO, capture_output=True,
                          text=True, check=False)  # fmt: skip


def test_ruff_check_is_clean() -> None:
    result = ruff("check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean() -> None:
    result = ruff("format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_test_module_names_are_unique_across_suites() -> None:
    """`pytest tests vm-tests` imports test modules by basename (no packages): two files of
    one name stop the whole run at collection."""
    seen: dict[str, Path] = {}
    for path in sorted([*REPO.glob("tests/test_*.py"), *REPO.glob("vm-tests/test_*.py")]):
        assert path.name not in seen, f"{path} and {seen[path.name]} share a name"
        seen[path.name] = path
