"""What a failed VM test leaves behind: serial consoles, server log, client records.

Saved under test-artifacts/vm/<test-name>/ (gitignored) and the tails printed, so a CI log
alone usually says what went wrong.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "vm"
TAIL_LINES = 30


def test_dir(nodeid: str) -> Path:
    name = nodeid.split("::", 1)[-1]
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")
    return ARTIFACTS / safe


def _tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])


def save(
    nodeid: str, consoles: dict[str, str], logs: dict[str, Path], records: dict[str, object]
) -> Path:
    """Write everything and print the tails; returns the directory."""
    directory = test_dir(nodeid)
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    for name, text in consoles.items():
        (directory / f"{name}.serial.log").write_text(text)
        print(f"\n--- {name} serial console (tail) ---\n{_tail(text)}")
    for name, path in logs.items():
        if path.is_file():
            shutil.copyfile(path, directory / name)
            print(f"\n--- {name} (tail) ---\n{_tail(path.read_text(errors='replace'))}")
    for mac, record in records.items():
        text = json.dumps(record, indent=2)
        (directory / f"client-{mac.replace(':', '-')}.json").write_text(text)
        events = record.get("events", []) if isinstance(record, dict) else []
        kinds = [e.get("kind") for e in events]
        print(f"\n--- client record {mac}: {kinds if record else 'none'}")
    print(f"\nvm-test artifacts: {directory}")
    return directory
