"""Setting kinds of the `[app]` section: an import target ("module:app") and import paths."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reactor.ops.kinds import Invalid, Kind, show, toml_string

_TARGET = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(\(\))?")


@dataclass(frozen=True)
class AppTarget(Kind):
    """"module:attribute" or "module:factory()"; "" = unset."""

    def type_name(self) -> str:
        return '"module:app" or "module:factory()", or unset'

    def check(self, value: object, base: Path) -> str | None:
        if value is None or value == "":
            return None
        if not isinstance(value, str) or not _TARGET.fullmatch(value.strip()):
            raise Invalid(f'must be "module:app" or "module:factory()", got {show(value)}')
        return value.strip()


@dataclass(frozen=True)
class ImportPaths(Kind):
    """Directories put at the front of the import path; relative ones resolve against the
    base directory. From text (environment, --app-dir), comma-separated like other lists."""

    def type_name(self) -> str:
        return "list of directories"

    def check(self, value: object, base: Path) -> tuple[Path, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise Invalid(f"must be a list of directory paths, got {show(value)}")
        paths = []
        for text in value:
            path = Path(os.path.abspath(base / os.path.expanduser(text)))
            if not path.is_dir():
                raise Invalid(f"directory {toml_string(text)} ({path}) does not exist")
            paths.append(path)
        return tuple(paths)

    def from_text(self, text: str) -> object:
        return [item.strip() for item in text.split(",") if item.strip()]

    def to_toml(self, value: Any) -> str | None:
        return "[" + ", ".join(toml_string(str(p)) for p in value) + "]"
