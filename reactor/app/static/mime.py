"""Content-Type by file name: the stdlib's built-in table, a few gaps filled, per-mount overrides.

Strategy: one `mimetypes.MimeTypes` built once from the built-in table only (not the host's
/etc/mime.types, so a response does not change with the machine), flattened into a dict of
lower-case extension → ready-made header value. Each mount layers its overrides on a copy.
Text types and the JSON/JavaScript types get `; charset=utf-8`.
"""

from __future__ import annotations

import mimetypes

DEFAULT_TYPE = b"application/octet-stream"
_CHARSET_TYPES = frozenset({"application/javascript", "application/json", "text/javascript"})
# Common web types the 3.11 table lacks (or marks non-standard), as nginx's mime.types has
# them: without one a browser downloads an .xhtml page instead of showing it.
_EXTRA = {
    ".gz": "application/gzip", ".md": "text/markdown", ".map": "application/json",
    ".otf": "font/otf", ".ttf": "font/ttf",
    ".webp": "image/webp", ".woff": "font/woff", ".woff2": "font/woff2",
    ".xhtml": "application/xhtml+xml", ".atom": "application/atom+xml",
    ".rss": "application/rss+xml", ".apng": "image/apng",
    ".eot": "application/vnd.ms-fontobject",
    ".ogg": "audio/ogg", ".oga": "audio/ogg", ".ogv": "video/ogg", ".flac": "audio/flac",
    ".m4a": "audio/mp4", ".m4v": "video/mp4",
    # Documents, archives and media a download page or an HLS stream serves: without these
    # an .xlsx or a .ts segment went out as application/octet-stream where nginx names it.
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ".odt": "application/vnd.oasis.opendocument.text",
    ".ods": "application/vnd.oasis.opendocument.spreadsheet",
    ".odp": "application/vnd.oasis.opendocument.presentation",
    ".odg": "application/vnd.oasis.opendocument.graphics",
    ".7z": "application/x-7z-compressed", ".rar": "application/vnd.rar",
    ".jar": "application/java-archive", ".war": "application/java-archive",
    ".kml": "application/vnd.google-earth.kml+xml", ".kmz": "application/vnd.google-earth.kmz",
    ".crt": "application/x-x509-ca-cert", ".der": "application/x-x509-ca-cert",
    ".shtml": "text/html", ".ts": "video/mp2t", ".flv": "video/x-flv",
}

_base: dict[str, bytes] | None = None


def with_charset(media_type: str) -> bytes:
    """The header value: `text/*`, JSON and JavaScript are declared UTF-8, unless the value
    carries parameters of its own (an override's `text/html; charset=iso-8859-1`)."""
    kind, semicolon, parameters = media_type.strip().partition(";")
    kind = kind.strip().lower()
    if semicolon:  # the type is case-insensitive, a parameter's value may not be
        return f"{kind}; {parameters.strip()}".encode("ascii")
    if kind.startswith("text/") or kind in _CHARSET_TYPES:
        kind += "; charset=utf-8"
    return kind.encode("ascii")


def _base_table() -> dict[str, bytes]:
    global _base
    if _base is None:
        db = mimetypes.MimeTypes(filenames=())
        table = {**db.types_map[False], **db.types_map[True], **_EXTRA}
        _base = {ext.lower(): with_charset(kind) for ext, kind in table.items()}
    return _base


class MimeMap:
    """`type_for(name)` → Content-Type value, with this mount's overrides on top."""

    __slots__ = ("_table",)

    def __init__(self, overrides: dict[str, str] | None = None) -> None:
        table = dict(_base_table())
        for ext, kind in (overrides or {}).items():
            ext = ext.lower() if ext.startswith(".") else "." + ext.lower()
            table[ext] = with_charset(kind)
        self._table = table

    def type_for(self, name: str) -> bytes:
        dot = name.rfind(".")
        if dot <= 0:  # no extension, or a dotfile's name only
            return DEFAULT_TYPE
        return self._table.get(name[dot:].lower(), DEFAULT_TYPE)
