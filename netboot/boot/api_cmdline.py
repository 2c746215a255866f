"""The boot API's `cmdline`, read as pixiecore reads it (pixiecore/booters.go).

A string is a Go text/template whose one function is `URL`: `{{ URL "https://..." }}`
marks a URL the client fetches through the boot server. An object is pixiecore's older
form: keys in sorted order, a string value as `key="value"` (Go's %q quoting), `true` or
`false` as the bare key, `{"url": "..."}` as `key={{ URL "..." }}`; any other value refuses
the machine. The result is text and URLs, alternating, so whoever renders the script
decides how a URL reaches the client (proxied through a sealed name or as given).
"""

from __future__ import annotations

import ast
import re
from urllib.parse import urljoin

# `{{ URL "..." }}` with Go's trim markers (`{{- `, ` -}}`) and either Go string literal
GO_STRING = r'"(?:[^"\\\n]|\\.)*"|`[^`]*`'
URL_ACTION = re.compile(r"\{\{(-\s)?\s*URL\s+(" + GO_STRING + r")\s*(\s-)?\}\}")
GO_ESCAPE = re.compile(
    r'\\(?:[abfnrtv\\"]|x[0-9a-fA-F]{2}|[0-7]{3}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8})'
)
# what Go's strconv.Quote writes for these characters
QUOTE_ESCAPES = {"\a": r"\a", "\b": r"\b", "\f": r"\f", "\n": r"\n", "\r": r"\r", "\t": r"\t",
                 "\v": r"\v", '"': r"\"", "\\": r"\\"}  # fmt: skip


class CmdlineError(ValueError):
    """A `cmdline` pixiecore would refuse too (the machine is then not booted)."""


def go_quote(text: str) -> str:
    """Go's `%q` of a string (strconv.Quote): printable characters as they are."""
    out = []
    for char in text:
        code = ord(char)
        if char in QUOTE_ESCAPES:
            out.append(QUOTE_ESCAPES[char])
        elif char.isprintable():
            out.append(char)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        else:
            out.append(f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def _go_unquote(literal: str) -> str:
    if literal.startswith("`"):
        return literal[1:-1]
    body = literal[1:-1]
    if "\\" in GO_ESCAPE.sub("", body):
        raise CmdlineError(f"cmdline: bad escape in {literal}")
    return ast.literal_eval(literal)


def from_object(params: dict[str, object]) -> str:
    """pixiecore's constructCmdline: the object form as a template string."""
    words = []
    for key in sorted(params):
        value = params[key]
        if isinstance(value, bool):
            words.append(key)
        elif isinstance(value, str):
            words.append(f"{key}={go_quote(value)}")
        elif isinstance(value, dict):
            url = value.get("url")
            if not isinstance(url, str):
                raise CmdlineError(f"cmdline key {key!r} has an object value with no 'url'")
            words.append(f"{key}={{{{ URL {go_quote(url)} }}}}")
        else:
            raise CmdlineError(f"cmdline key {key!r}: unsupported value {type(value).__name__}")
    return " ".join(words)


def expand(template: str, api_url: str) -> tuple[str, ...]:
    """The template's text and URLs, alternating (text first and last); each URL made
    absolute against the API URL. A template action other than `URL "..."` is refused."""
    parts: list[str] = []
    position = 0
    for action in URL_ACTION.finditer(template):
        text = template[position : action.start()]
        parts.append(text.rstrip() if action.group(1) else text)
        parts.append(urljoin(api_url, _go_unquote(action.group(2))))
        position = action.end()
        if action.group(3):
            position += len(template[position:]) - len(template[position:].lstrip())
    parts.append(template[position:])
    if any("{{" in text for text in parts[::2]):
        raise CmdlineError('cmdline: a template action other than {{ URL "..." }}')
    return tuple(parts)


def parse(cmdline: object, api_url: str) -> tuple[str, ...]:
    """The API's `cmdline` (absent, a string or an object) as text and URLs, alternating."""
    if cmdline is None:
        return ("",)
    if isinstance(cmdline, dict):
        cmdline = from_object(cmdline)
    if not isinstance(cmdline, str):
        raise CmdlineError(f"cmdline of unknown type {type(cmdline).__name__}")
    return expand(cmdline, api_url)
