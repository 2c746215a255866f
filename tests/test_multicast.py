"""`boot.transfer = "multicast"`: a real `netboot serve` starts udp-sender on demand and
clients in their own namespaces run lib.sh's own `nb_get_http` with busybox and the
add-on's bundled udp-receiver (through its bundled loader). A late client opens the next
session; only when every session slot is busy does a client use HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from netboot import config, layout
from netboot.image.standalone import CLIENT_DIR
from netboot.multicast import MulticastSessions
from testbed.bridge_lan import SERVER_IP, BridgeLan
from testbed.cli import run_netboot
from testbed.serve import ServeProcess

IMAGE, VERSION = "room", "20261202-170000"
PORT = 8080
WINDOW = 3
LOCAL = "127.0.0.1"  # an asker on lo's own subnet


def publish(root: Path) -> bytes:
    directory = layout.version_dir(root, IMAGE, VERSION)
    directory.mkdir(parents=True)
    payload = os.urandom(3 * 1024 * 1024)
    (directory / layout.SQUASHFS).write_bytes(payload)
    (directory / layout.MANIFEST).write_text(json.dumps({"size": len(payload)}))
    return payload


def addon_tree(root: Path, dest: Path) -> Path:
    result = run_netboot("initrd", "--root", str(root))
    assert result.returncode == 0, result.stderr
    dest.mkdir()
    with open(root / layout.ADDON_INITRD, "rb") as archive:
        subprocess.run(["cpio", "-idm", "--quiet"], stdin=archive, cwd=dest, check=True)
    return dest / "netboot"


def client_script(home: Path, run: Path, payload: bytes, server: str = SERVER_IP) -> str:
    """lib.sh's `nb_get_http` for the test image, as the add-on runs it (in busybox sh)."""
    base = f"http://{server}:{PORT}"
    return f"""
NB_BB=/bin/busybox
. {CLIENT_DIR}/lib.sh
NB_HOME={home} NB_RUN={run} NB_NETDEV=eth0
nb_die() {{ echo "DIE: $*"; exit 3; }}
nb_ram_mount() {{ mkdir -p "$NB_RUN/ram"; }}
mkdir -p "$NB_RUN"
NB_TRANSFER=multicast NB_SERVER={base} NB_IMAGE={IMAGE} NB_VERSION={VERSION}
NB_URL={base}/images/{IMAGE}/versions/{VERSION}/root.squashfs
NB_SIZE={len(payload)} NB_SHA256={hashlib.sha256(payload).hexdigest()}
nb_get_http
"""


@pytest.mark.netns
def test_room_shares_one_session_and_a_late_client_joins_the_next(
    tmp_path: Path, bridge_lan: BridgeLan
) -> None:
    root = tmp_path / "root"
    payload = publish(root)
    home = addon_tree(root, tmp_path / "addon")
    assert (home / "bin/udp-receiver").is_file() and (home / "lib/ld.so").is_file()
    serve = ServeProcess(
        bridge_lan.server,
        root,
        log_path=tmp_path / "serve.log",
        interface="br0",
        address=SERVER_IP,
        http_port=PORT,
        tftp_port=0,
        dhcp="off",
        extra=("--boot-transfer", "multicast", "--boot-multicast-window", str(WINDOW)),
    ).start()
    try:
        procs = []
        for index in range(3):
            client = bridge_lan.client(f"c{index}")
            client.ns.ip("addr", "add", f"10.99.0.{11 + index}/24", "dev", "eth0")
            run = tmp_path / f"run{index}"
            script = client_script(home, run, payload)
            procs.append((run, client.ns.popen("busybox", "sh", "-c", script, **_pipes())))
        for run, proc in procs:
            out, _ = proc.communicate(timeout=120)
            assert proc.returncode == 0, out
            assert "netboot: image received by multicast and verified" in out, out
            assert (run / "ram/root.squashfs").read_bytes() == payload
        # one sender served all three; the server counted one session
        stats = serve.api("/api/stats")
        assert stats["multicast"]["started"] == 1, stats
        assert stats["multicast"]["offered"] == 3, stats

        # a client asking after a session's join window opens the next session (start one,
        # wait past its window, then ask) instead of falling back to HTTP
        late = bridge_lan.client("late")
        late.ns.ip("addr", "add", "10.99.0.30/24", "dev", "eth0")
        first = late.ns.run("busybox", "wget", "-q", "-O", "-",
                            f"http://{SERVER_IP}:{PORT}/multicast/{IMAGE}/{VERSION}")  # fmt: skip
        assert "NB_MC_PORTBASE='9000'" in first.stdout, first.stdout
        late.ns.run("sleep", str(WINDOW))
        run = tmp_path / "run-late"
        proc = late.ns.popen("busybox", "sh", "-c", client_script(home, run, payload), **_pipes())
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out
        assert "joining the multicast session on ports 9002-9003" in out, out
        assert "netboot: image received by multicast and verified" in out, out
        assert (run / "ram/root.squashfs").read_bytes() == payload
        stats = serve.api("/api/stats")
        assert stats["multicast"]["started"] == 3, stats
    finally:
        assert serve.stop() == 0, serve.tail()
    assert "Traceback" not in serve.log()


def _pipes() -> dict:
    return {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}


def test_every_slot_busy_sends_the_client_to_http(tmp_path: Path) -> None:
    """Sessions whose join window has passed hold their slots until their sender exits;
    with every slot held, the next asker is declined (lib.sh then uses HTTP), and a slot
    freed by an exiting sender is used again. The sender here is a real process that
    just waits, standing in for a udp-sender nobody joins."""
    root = tmp_path / "root"
    publish(root)
    sender = tmp_path / "fake-udp-sender"
    sender.write_text("#!/bin/sh\nexec sleep 30\n")
    sender.chmod(0o755)
    settings = config.parse(
        {"server": {"root": str(root)},
         "boot": {"multicast_window": 2, "multicast_sessions": 2}}, "test")  # fmt: skip

    async def scenario() -> list[dict]:
        sessions = MulticastSessions(settings, "lo", sender=str(sender))
        answers = [await sessions.offer(IMAGE, VERSION, LOCAL)]
        answers.append(await sessions.offer(IMAGE, VERSION, LOCAL))  # joins the first
        await asyncio.sleep(2)  # past the first session's window
        answers.append(await sessions.offer(IMAGE, VERSION, LOCAL))  # the next session
        await asyncio.sleep(2)
        answers.append(await sessions.offer(IMAGE, VERSION, LOCAL))  # both slots busy
        for session in list(sessions.sessions.values()):
            assert session.process is not None
            session.process.kill()
        await asyncio.sleep(0.5)  # reapers free the slots
        answers.append(await sessions.offer(IMAGE, VERSION, LOCAL))
        answers.append(sessions.stats)
        await sessions.close()
        return answers

    first, joined, second, busy, again, stats = asyncio.run(scenario())
    assert first["portbase"] == joined["portbase"] == 9000
    assert second["portbase"] == 9002
    assert busy == {"reason": "all multicast sessions are busy"}
    assert again["portbase"] == 9000
    assert stats["started"] == 3 and stats["declined"] == 1, stats


def test_asks_arriving_together_join_one_session(tmp_path: Path) -> None:
    """A room's asks land within milliseconds: while the first is still starting its
    sender, the others must wait for it and join, not open a session each."""
    root = tmp_path / "root"
    publish(root)
    sender = tmp_path / "fake-udp-sender"
    sender.write_text("#!/bin/sh\nexec sleep 30\n")
    sender.chmod(0o755)
    settings = config.parse({"server": {"root": str(root)}}, "test")

    async def scenario() -> tuple[list[dict], dict]:
        sessions = MulticastSessions(settings, "lo", sender=str(sender))
        answers = await asyncio.gather(*(sessions.offer(IMAGE, VERSION, LOCAL) for _ in range(5)))
        stats = dict(sessions.stats)
        await sessions.close()
        return list(answers), stats

    answers, stats = asyncio.run(scenario())
    assert [answer.get("portbase") for answer in answers] == [9000] * 5, answers
    assert stats["started"] == 1 and stats["offered"] == 5, stats
