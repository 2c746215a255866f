"""`manifest.json` of a published version: one type for everything that writes it.

`netboot image` writes a manifest for a fresh build, `netboot kernel` one derived from the
current version's (same squashfs, another kernel). The server and older netboot versions
read the JSON as a plain object, so the file format stays what it was: the fields below
as JSON keys, sorted. Reading is lenient, because a published version is never rewritten
and may come from an older netboot: missing or mistyped keys take their defaults, and keys
this version does not know are kept in `extra` and written back when a manifest is derived.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from netboot import layout

CREATED_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def created_now() -> str:
    """The `created` stamp: UTC, second precision, `Z` suffix."""
    return datetime.now(UTC).strftime(CREATED_FORMAT)


@dataclass(frozen=True)
class Manifest:
    """What a published version holds and how it was made (see `netboot.layout`)."""

    name: str
    version: str
    size: int = 0  # bytes of root.squashfs, checked by the client after an HTTP fetch
    sha256: str = ""  # of root.squashfs, likewise
    kernel_version: str = ""  # modules directory name; the add-on carries its modules
    kernel: str = ""  # the kernel's path inside the image
    initrd: str | None = None  # the initramfs's path inside the image, None without one
    standalone_initrd: bool = False  # the version has standalone.img
    created: str = field(default_factory=created_now)
    source: str = ""  # the SOURCE the image was built from
    cleanup: bool = True
    mksquashfs_params: tuple[str, ...] = ()
    kernel_from: str | None = None  # set by `netboot kernel`: where the kernel came from
    extra: dict[str, Any] = field(default_factory=dict)  # keys of other netboot versions

    def to_dict(self) -> dict[str, Any]:
        """The JSON object; `kernel_from` only when set, as builds never wrote it."""
        data = {**self.extra, **asdict(self)}
        del data["extra"]
        data["mksquashfs_params"] = list(self.mksquashfs_params)
        if self.kernel_from is None:
            del data["kernel_from"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        """A manifest as read from JSON, tolerating what older versions wrote."""
        known = {f.name: f for f in fields(cls) if f.name != "extra"}
        values: dict[str, Any] = {}
        for name in known:
            if name not in data:
                continue
            value = _typed(name, data[name])
            if value is not None or name in _OPTIONAL:
                values[name] = value
        values.setdefault("name", "")
        values.setdefault("version", "")
        values.setdefault("created", "")
        extra = {key: value for key, value in data.items() if key not in known}
        return cls(**values, extra=extra)

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        """The manifest of a version directory; an unreadable one reads as empty."""
        try:
            data = json.loads((directory / layout.MANIFEST).read_text())
        except (OSError, ValueError):
            data = {}
        return cls.from_dict(data if isinstance(data, dict) else {})

    def derive(self, **changes: Any) -> Manifest:
        """A manifest for a new version made from this one (a fresh `created`)."""
        return replace(self, **{"created": created_now(), **changes})

    def write(self, directory: Path) -> Path:
        """Write `manifest.json` into a staging directory, synced, mode 644."""
        path = directory / layout.MANIFEST
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(path, 0o644)
        return path


_OPTIONAL = {"initrd", "kernel_from"}  # None is a value of these, not a bad type
_TYPES: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "version": str,
    "size": int,
    "sha256": str,
    "kernel_version": str,
    "kernel": str,
    "initrd": str,
    "standalone_initrd": bool,
    "created": str,
    "source": str,
    "cleanup": bool,
    "mksquashfs_params": list,
    "kernel_from": str,
}


def _typed(name: str, value: Any) -> Any:
    """value if it has the field's JSON type (None otherwise); lists become tuples."""
    wanted = _TYPES[name]
    if wanted is int and isinstance(value, bool):
        return None
    if not isinstance(value, wanted):
        return None
    if name == "mksquashfs_params":
        return tuple(str(item) for item in value)
    return value
