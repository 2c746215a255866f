"""The boot API's `cmdline` as pixiecore reads it (pixiecore/booters.go constructCmdline and
its text/template `URL` function), and the sealed names of proxied files. Pure checks."""

from __future__ import annotations

import re

import pytest

from netboot.boot import sealed
from netboot.boot.api import ApiBoot, ApiRefusal, parse_reply, proxied_link
from netboot.boot.api_cmdline import CmdlineError, go_quote, parse

API = "http://192.0.2.5:9000/api/"


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("ttyS0,115200", '"ttyS0,115200"'),
        ("a b", '"a b"'),
        ('say "hi" \\o/', '"say \\"hi\\" \\\\o/"'),
        ("tab\tnl\ncr\rbell\a", '"tab\\tnl\\ncr\\rbell\\a"'),
        ("\x01\x7f", '"\\x01\\x7f"'),
        ("é→", '"é→"'),  # printable: kept as it is
        ("\u00a0\u200b", '"\\u00a0\\u200b"'),  # not printable in Go either
        ("", '""'),
    ],
)
def test_values_are_quoted_as_gos_percent_q(text: str, quoted: str) -> None:
    assert go_quote(text) == quoted


def test_object_form_sorted_quoted_flags_and_urls() -> None:
    body = {
        "kernel": "/k",
        "cmdline": {
            "console": "ttyS0",
            "quiet": True,
            "nomodeset": False,  # pixiecore writes the bare key for false too
            "ks": {"url": "/ks.cfg"},
            "BOOT_IMAGE": "a b",
        },
    }
    boot = parse_reply(body, API)
    assert isinstance(boot, ApiBoot)
    # keys in byte order (Go's sort.Strings): upper case first
    assert boot.command_line() == (
        'BOOT_IMAGE="a b" console="ttyS0" ks=http://192.0.2.5:9000/ks.cfg nomodeset quiet'
    )


def test_template_url_function_and_trim_markers() -> None:
    text = 'a=1 x={{ URL "https://files.local/cc" }} y={{URL `rel/p`}}  z= {{- URL "/q" -}} end'
    assert parse(text, API) == (
        "a=1 x=",
        "https://files.local/cc",
        " y=",
        "http://192.0.2.5:9000/api/rel/p",
        "  z=",
        "http://192.0.2.5:9000/q",
        "end",
    )
    assert parse('k={{ URL "/a\\x2fb" }}', API)[1] == "http://192.0.2.5:9000/a/b"


@pytest.mark.parametrize(
    "cmdline",
    [
        {"a": 1},
        {"a": None},
        {"a": ["x"]},
        {"a": {"href": "/x"}},
        {"a": {"url": 7}},
        "{{ .MAC }}",
        "{{ URL .X }}",
        '{{ URL "/x" }} and {{ printf "%d" 1 }}',
        '{{ URL "\\q" }}',
        7,
        ["quiet"],
    ],
)
def test_what_pixiecore_refuses_refuses_the_machine(cmdline: object) -> None:
    result = parse_reply({"kernel": "/k", "cmdline": cmdline}, API)
    assert isinstance(result, ApiRefusal), result
    if not isinstance(cmdline, (int, list)):
        with pytest.raises(CmdlineError):
            parse(cmdline, API)


def test_cmdline_urls_must_be_http_and_one_word() -> None:
    for url in ("file:///etc/shadow", "/a b"):
        body = {"kernel": "/k", "cmdline": {"x": {"url": url}}}
        assert isinstance(parse_reply(body, API), ApiRefusal)


def test_null_fields_are_absent_as_for_go() -> None:
    body = {"kernel": "/k", "initrd": None, "cmdline": None, "message": None}
    assert parse_reply(body, API) == ApiBoot("http://192.0.2.5:9000/k", (), ("",), "")


def test_a_value_cannot_break_the_ipxe_line() -> None:
    boot = parse_reply({"kernel": "/k", "cmdline": {"a": "x\ny"}}, API)
    assert isinstance(boot, ApiBoot)
    assert boot.command_line() == 'a="x\\ny"'
    multiline = parse_reply({"kernel": "/k", "cmdline": 'a\nb={{ URL "/u" }}\nc'}, API)
    assert isinstance(multiline, ApiBoot)
    assert multiline.command_line() == "a b=http://192.0.2.5:9000/u c"


def test_proxied_entry_names_only_sealed_urls() -> None:
    body = {"kernel": "https://up.example/k?sig=SECRET", "initrd": ["/i"],
            "cmdline": {"ks": {"url": "/ks"}, "quiet": True}}  # fmt: skip
    boot = parse_reply(body, API)
    assert isinstance(boot, ApiBoot)
    entry = boot.entry(proxied_link("http://10.0.0.1:8080"))
    shown = " ".join([entry.kernel, *(u for _, u in entry.initrds), entry.cmdline])
    assert "SECRET" not in shown and "up.example" not in shown and "9000" not in shown
    token = re.compile(r"http://10\.0\.0\.1:8080/_/file\?name=([\w-]+)")
    kernel = token.fullmatch(entry.kernel)
    assert kernel and sealed.unseal(kernel.group(1)) == "https://up.example/k?sig=SECRET"
    initrd = token.fullmatch(entry.initrds[0][1])
    assert initrd and sealed.unseal(initrd.group(1)) == "http://192.0.2.5:9000/i"
    ks = re.fullmatch(r"ks=(\S+) quiet", entry.cmdline)
    assert ks and token.fullmatch(ks.group(1))
    assert sealed.unseal(token.fullmatch(ks.group(1)).group(1)) == "http://192.0.2.5:9000/ks"


def test_sealed_names_cannot_be_forged_or_altered() -> None:
    name = sealed.seal("http://192.0.2.5/k")
    assert sealed.unseal(name) == "http://192.0.2.5/k"
    assert sealed.seal("http://192.0.2.5/k") != name  # a fresh nonce each time
    flipped = name[:20] + ("A" if name[20] != "A" else "B") + name[21:]
    for bad in (flipped, name[:-1], name + "AA", "", "!!!!", "A" * 60, "x" * 10_000):
        assert sealed.unseal(bad) is None, bad
