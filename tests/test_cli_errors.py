"""The error spine: a command raises, `cli.main` alone prints the one line and picks the exit
code. Pure unit tests (no root, no subprocess): a stand-in subcommand module is registered."""

from __future__ import annotations

import argparse
import signal
import sys
import types
from collections.abc import Callable

import pytest

from netboot import cli
from netboot.commands.nfs import ExportError
from netboot.config import ConfigError
from netboot.dhcp.prerequisites import FullDhcpError
from netboot.errors import UserError
from netboot.image.errors import ImageError, os_errors_shown
from netboot.image.signals import Interrupted, interrupts_raise
from netboot.image.standalone import InitrdError
from netboot.netinfo import InterfaceError
from netboot.server import StartupError


def fake_command(monkeypatch: pytest.MonkeyPatch, run: Callable[[argparse.Namespace], int]) -> None:
    module = types.ModuleType("fake_netboot_command")
    module.add_arguments = lambda parser: None  # type: ignore[attr-defined]
    module.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(cli.SUBCOMMANDS, "fake", (module.__name__, "a stand-in"))


def raising(error: BaseException) -> Callable[[argparse.Namespace], int]:
    def run(_args: argparse.Namespace) -> int:
        raise error

    return run


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (UserError("bad input"), 2),
        (ConfigError("server.http_port", "a.toml", "must be a whole number"), 2),
        (StartupError("HTTP port 80 is taken"), 2),
        (InterfaceError("no such interface: nosuch0"), 2),
        (FullDhcpError("cannot read the lease file"), 2),
        (ImageError("deb: no kernel found"), 1),
        (InitrdError("image 'x' has no current version"), 1),
        (ExportError("cannot export missing /srv/x"), 1),
        (Interrupted(signal.SIGTERM), 143),
    ],
)
def test_a_user_error_is_one_line_and_its_exit_code(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: UserError,
    code: int,
) -> None:
    fake_command(monkeypatch, raising(error))
    assert cli.main(["fake"]) == code
    captured = capsys.readouterr()
    assert captured.err == f"netboot fake: {error}\n"
    assert captured.out == ""


def test_a_command_that_succeeds_returns_its_code(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_command(monkeypatch, lambda _args: 0)
    assert cli.main(["fake"]) == 0


def test_anything_else_is_a_bug_and_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_command(monkeypatch, raising(RuntimeError("bug")))
    with pytest.raises(RuntimeError, match="bug"):
        cli.main(["fake"])


def test_an_interruption_says_what_it_left(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def run(_args: argparse.Namespace) -> int:
        with interrupts_raise("nothing published"):
            raise Interrupted(signal.SIGINT)

    fake_command(monkeypatch, run)
    assert cli.main(["fake"]) == 130
    assert capsys.readouterr().err == "netboot fake: interrupted by SIGINT; nothing published\n"


def test_an_os_error_of_a_build_becomes_one_line() -> None:
    with pytest.raises(ImageError) as caught, os_errors_shown():
        raise PermissionError(13, "Permission denied", "/srv/netboot/images")
    assert str(caught.value) == "Permission denied: /srv/netboot/images"
    assert caught.value.exit_code == 1
