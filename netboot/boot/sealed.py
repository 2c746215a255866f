"""Sealed file names: the URLs the boot API handed out, as tokens only this process opens.

In API mode with `boot.api_proxy` the client fetches `/_/file?name=<token>` from netboot,
which fetches the URL inside for it (pixiecore's way). A token is the URL sealed with
ChaCha20-Poly1305 (authenticated encryption, like pixiecore's NaCl secretbox) under a key
made when the process starts: a client cannot forge or alter one, so netboot proxies only
URLs the API gave it (it is no open proxy), and cannot read one either, so an API URL that
carries a secret (a presigned query, user:password@) does not reach the client or its
screen. Tokens die with the process, as pixiecore's do; a reload keeps them.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

NONCE = 12  # bytes; random per token (2**96 values: no reuse in a process's lifetime)
MAX_TOKEN = 8192  # characters; a longer name is not one of ours
_BOX = ChaCha20Poly1305(os.urandom(32))  # one key per process


def seal(url: str) -> str:
    """The token of `url`: URL-safe base64 without padding (fits a query and an iPXE line)."""
    nonce = os.urandom(NONCE)
    blob = nonce + _BOX.encrypt(nonce, url.encode(), None)
    return base64.urlsafe_b64encode(blob).decode().rstrip("=")


def unseal(token: str) -> str | None:
    """The URL sealed in `token`, or None when this process did not make it."""
    if len(token) > MAX_TOKEN:
        return None
    try:
        blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        return _BOX.decrypt(blob[:NONCE], blob[NONCE:], None).decode()
    except (InvalidTag, ValueError, binascii.Error, UnicodeDecodeError):
        return None
