"""A short run of bench/fuzz.py against a live `netboot serve`: every protocol takes
mutated traffic without a traceback, a 5xx, a lost probe or a leaked fd, and a TFTP read
succeeds while 200 never-acknowledged transfers pend (issue 12)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.netns


def test_short_fuzz_run_is_clean() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "fuzz.py"),
            "--cases",
            "300",
            "--probe-every",
            "50",
            "--new-macs",
            "300",
            "--big-clients",
            "30",
            "--abandoned",
            "200",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert result.stdout.strip(), result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    protocols = {f["protocol"] for f in figures}
    assert {"proxy dhcp", "full dhcp", "tftp", "http", "abandoned TFTP"} <= protocols
    pileup = next(f for f in figures if f["protocol"] == "abandoned TFTP")
    assert pileup["pending_transfers"] >= 100, pileup  # the probe ran while they pended
    for f in figures:
        assert f["cases"] > 0, f
        assert f["tracebacks"] == 0, f
        assert f["http_5xx"] == 0, f
        assert f["probes"] > 0 and f["answered"] == f["probes"], f
        assert f["fds_after"] <= f["fds_before"] + 3, f
    assert result.returncode == 0, result.stderr
