"""Setting kinds of the `[tls]` section: the `[[tls.certificates]]` tables chosen by SNI and
the TLS 1.2 cipher list."""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reactor.ops.kinds import Invalid, Kind, json_value, show, toml_string, toml_value

# Mozilla's "intermediate" TLS 1.2 suites (server-side-tls, v5.7), ECDHE only: AEAD ciphers
# with forward secrecy. The stdlib default adds the CBC suites (testssl.sh: "obsolete CBC
# ciphers", LUCKY13); DHE would need DH parameters, which the stdlib context does not load.
INTERMEDIATE_CIPHERS = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                        "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                        "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305")
CERTIFICATE_KEYS = ("names", "cert", "key", "key_password_file")


def _path(value: object, base: Path, where: str, key: str) -> str:
    # Absolute, symlinks kept (as tls.cert's): certbot's live/NAME/cert.pem is a link
    # swapped to a new archive/ file at renewal; resolved here, a reload and `tls.watch`
    # would read the old target for ever.
    if not isinstance(value, str) or not value:
        raise Invalid(f"{where}: {key} must be a path string, got {show(value)}")
    return os.path.abspath(base / os.path.expanduser(value))


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

    def from_text(self, text: str) -> object:
        return json_value(text, 'a list of tables like [{"names": ["a.example"], "cert":'
                                ' "/etc/a.pem", "key": "/etc/a.key"}]')

    def to_toml(self, value: Any) -> str | None:
        tables = []
        for entry in value:
            items = [f"{k} = {toml_value(v)}" for k, v in entry.items() if v is not None]
            tables.append("{ " + ", ".join(items) + " }")
        return "[" + ", ".join(tables) + "]"


@dataclass(frozen=True)
class CipherList(Kind):
    """An OpenSSL cipher list for TLS 1.2, checked by OpenSSL itself (a string that selects
    no cipher is refused here, at load time, not at the first handshake)."""

    def type_name(self) -> str:
        return "OpenSSL cipher list"

    def check(self, value: object, base: Path) -> str:
        if not isinstance(value, str) or not value.strip():
            raise Invalid(f"must be an OpenSSL cipher list string, got {show(value)}")
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ciphers(value.strip())
        except ssl.SSLError:
            raise Invalid(f"selects no cipher OpenSSL knows: {toml_string(value)}") from None
        return value.strip()
