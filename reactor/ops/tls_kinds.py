"""Setting kinds of the `[tls]` section: the `[[tls.certificates]]` tables chosen by SNI."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reactor.ops.kinds import Invalid, Kind, show, toml_string, toml_value

CERTIFICATE_KEYS = ("names", "cert", "key", "key_password_file")


def _path(value: object, base: Path, where: str, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise Invalid(f"{where}: {key} must be a path string, got {show(value)}")
    return str((base / Path(value).expanduser()).resolve())


@dataclass(frozen=True)
class Certificates(Kind):
    """A list of tables: `names` (exact or "*." wildcard), `cert`, `key`, optionally
    `key_password_file`; paths are stored absolute."""

    def type_name(self) -> str:
        return "list of certificate tables"

    def check(self, value: object, base: Path) -> tuple[dict[str, Any], ...]:
        if not isinstance(value, list | tuple) or not all(isinstance(v, dict) for v in value):
            raise Invalid(f"must be a list of tables ([[tls.certificates]]), got {show(value)}")
        return tuple(self._check_one(i, table, base) for i, table in enumerate(value))

    def _check_one(self, index: int, table: dict[str, Any], base: Path) -> dict[str, Any]:
        where = f"certificate #{index + 1}"
        unknown = sorted(set(table) - set(CERTIFICATE_KEYS))
        if unknown:
            raise Invalid(f"{where}: unknown key {unknown[0]!r} "
                          f"(keys: {', '.join(CERTIFICATE_KEYS)})")
        missing = [key for key in ("names", "cert", "key") if key not in table]
        if missing:
            raise Invalid(f"{where}: needs names, cert and key (missing {missing[0]})")
        names = table["names"]
        if (not isinstance(names, list | tuple) or not names
                or not all(isinstance(n, str) and n.strip() for n in names)):
            raise Invalid(f"{where}: names must be a non-empty list of host names, "
                          f"got {show(names)}")
        for name in names:
            if "*" in name.removeprefix("*.") or any(c.isspace() for c in name):
                raise Invalid(f"{where}: bad name {toml_string(name)} (exact, or \"*.\" "
                              "and a domain)")
        checked: dict[str, Any] = {
            "names": tuple(n.strip().lower() for n in names),
            "cert": _path(table["cert"], base, where, "cert"),
            "key": _path(table["key"], base, where, "key"),
            "key_password_file": None,
        }
        if table.get("key_password_file"):
            checked["key_password_file"] = _path(table["key_password_file"], base, where,
                                                 "key_password_file")
        return checked

    def to_toml(self, value: Any) -> str | None:
        tables = []
        for entry in value:
            items = [f"{k} = {toml_value(v)}" for k, v in entry.items() if v is not None]
            tables.append("{ " + ", ".join(items) + " }")
        return "[" + ", ".join(tables) + "]"
