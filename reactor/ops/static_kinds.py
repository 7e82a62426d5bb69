"""Setting kinds of the `[static]` section: free text, MIME override tables, extra mounts."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reactor.app.static import MountError, StaticMount
from reactor.ops.kinds import Invalid, Kind, json_value, show, toml_string, toml_value

MOUNT_KEYS = ("prefix", "root", "index", "listing", "symlinks", "dotfiles", "cache_control",
              "max_ranges", "mime_overrides", "uploads")
_BOOL_KEYS = ("listing", "dotfiles", "uploads")


@dataclass(frozen=True)
class Text(Kind):
    """A string; "" means unset when `optional`."""

    optional: bool = False

    def type_name(self) -> str:
        return "string, or unset" if self.optional else "string"

    def check(self, value: object, base: Path) -> str | None:
        if self.optional and (value is None or value == ""):
            return None
        if not isinstance(value, str):
            raise Invalid(f"must be a string, got {show(value)}")
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
            raise Invalid(f"must not contain control characters, got {toml_string(value)}")
        return value


@dataclass(frozen=True)
class MountText(Text):
    """A string option of the [static] document root (`prefix`, `index`, `cache_control`),
    checked as its `StaticMount` checks it, so a value the mount refuses is this setting's
    error here, not a failure when the server builds its app."""

    key: str = "prefix"

    def check(self, value: object, base: Path) -> str | None:
        text = super().check(value, base)
        _check_as_mount(base, **{self.key: text})
        return text


def _check_as_mount(base: Path, **options: Any) -> None:
    """Invalid, with the mount's own reason, if a document root at `base` mounted at "/"
    with `options` would be refused when the server builds its app."""
    try:
        StaticMount(**{"prefix": "/", "root": base, "index": None, **options})
    except MountError as exc:
        raise Invalid(str(exc).removeprefix("static mount '/': ")
                      .removeprefix("static mount ")) from None


def _check_mime_table(value: object) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise Invalid(f'must be a table of ".ext" = "type/subtype", got {show(value)}')
    return {k if k.startswith(".") else "." + k: v for k, v in value.items()}


def _table_toml(table: dict[str, Any]) -> str:
    if not table:
        return "{}"
    return "{ " + ", ".join(f"{toml_string(k) if not k.isidentifier() else k} = "
                            f"{_any_toml(v)}" for k, v in table.items()) + " }"


def _any_toml(value: Any) -> str:
    return _table_toml(value) if isinstance(value, dict) else toml_value(value)


@dataclass(frozen=True)
class MimeOverrides(Kind):
    """A table of file extension → media type."""

    def type_name(self) -> str:
        return 'table of ".ext" = "type/subtype"'

    def check(self, value: object, base: Path) -> tuple[tuple[str, str], ...]:
        if isinstance(value, tuple):  # already checked (a default)
            value = dict(value)
        table = _check_mime_table(value)
        _check_as_mount(base, mime_overrides=table)
        return tuple(sorted(table.items()))

    def from_text(self, text: str) -> object:
        return json_value(text, 'a table like {".log": "text/plain"}')

    def to_toml(self, value: Any) -> str | None:
        return _table_toml(dict(value))


@dataclass(frozen=True)
class Mounts(Kind):
    """Extra document roots: a list of tables with the keys of [static] (prefix, root, ...)."""

    def type_name(self) -> str:
        return "list of mount tables"

    def check(self, value: object, base: Path) -> tuple[dict[str, Any], ...]:
        if not isinstance(value, list | tuple) or not all(isinstance(v, dict) for v in value):
            raise Invalid(f"must be a list of tables ([[static.mounts]]), got {show(value)}")
        return tuple(self._check_one(index, table, base) for index, table in enumerate(value))

    def _check_one(self, index: int, table: dict[str, Any], base: Path) -> dict[str, Any]:
        where = f"mount #{index + 1}"
        unknown = sorted(set(table) - set(MOUNT_KEYS))
        if unknown:
            raise Invalid(f"{where}: unknown key {unknown[0]!r} (keys: {', '.join(MOUNT_KEYS)})",
                          (index, unknown[0]))
        if "prefix" not in table or "root" not in table:
            raise Invalid(f"{where}: needs both prefix and root", (index, None))
        mount = dict(table)
        if not isinstance(mount["root"], str):
            raise Invalid(f"{where}: root must be a path string, got {show(mount['root'])}",
                          (index, "root"))
        # absolute, symlinks kept (as static.root's): a deploy that swaps `current` to a new
        # release directory is served at once, not the release the link named at load
        mount["root"] = os.path.abspath(Path(base, mount["root"]))
        for key in _BOOL_KEYS:
            if key in mount and not isinstance(mount[key], bool):
                raise Invalid(f"{where}: {key} must be true or false, got {show(mount[key])}",
                              (index, key))
        if "mime_overrides" in mount:
            try:
                mount["mime_overrides"] = _check_mime_table(mount["mime_overrides"])
            except Invalid as exc:
                raise Invalid(str(exc), (index, "mime_overrides")) from None
        if mount.get("cache_control") == "" or mount.get("index") == "":
            mount = {k: (None if v == "" and k in ("cache_control", "index") else v)
                     for k, v in mount.items()}
        try:
            StaticMount(**mount)
        except (MountError, TypeError) as exc:
            raise Invalid(f"{where}: {exc}", (index, None)) from None
        return mount

    def from_text(self, text: str) -> object:
        return json_value(text, 'a list of tables like [{"prefix": "/a", "root": "/srv/a"}]')

    def to_toml(self, value: Any) -> str | None:
        return "[" + ", ".join(_table_toml(m) for m in value) + "]"
