"""Turning what a native handler returns into a `Response`: plain values, files.

A handler may return a `Response`, a dict or list (JSON), a str (text/plain) or bytes
(application/octet-stream). A `FileResponse` (`Response.file(path)`) is served through the
static-file code with the request at hand: Content-Type by extension, validators and
conditional requests, ranges, sendfile for large files.
"""

from __future__ import annotations

import os
import unicodedata
from typing import Any

from reactor.app.compression import CompressibleTypes
from reactor.app.static.files import FileServer
from reactor.app.static.gzcache import GzipCache
from reactor.app.static.mount import StaticMount
from reactor.app.static.paths import open_under
from reactor.app.types import FileResponse, Request, Response, text_response

_NO_TYPES = CompressibleTypes(())  # files from handlers are sent as they are
_servers: dict[str, FileServer] = {}
_SERVERS_MAX = 256


def to_response(request: Request, result: Any) -> Response:
    """`result` as a Response (see the module docstring). Raises TypeError for anything else."""
    if type(result) is Response:
        return result
    if isinstance(result, FileResponse):
        return file_response(request, result)
    if isinstance(result, Response):
        return result
    if isinstance(result, dict | list):
        return Response.json(result)
    if isinstance(result, str):
        return Response.text(result)
    if isinstance(result, bytes):
        return Response.binary(result)
    raise TypeError(f"a handler returned {type(result).__name__}; return a Response, dict,"
                    " list, str or bytes")


def _server_for(directory: str) -> FileServer:
    server = _servers.get(directory)
    if server is None:
        if len(_servers) >= _SERVERS_MAX:
            _servers.clear()
        mount = StaticMount("/", directory, index=None, symlinks="follow", dotfiles=True)
        server = _servers[directory] = FileServer(mount, GzipCache(total_bytes=0),
                                                  types=_NO_TYPES, gzip_enabled=False)
    return server


def file_response(request: Request, wanted: FileResponse) -> Response:
    """Blocking: the static-file answer for `wanted.path`, its extra fields kept."""
    directory, name = os.path.split(os.path.abspath(wanted.path))
    if not name or not os.path.isdir(directory):
        return text_response(404, "Not Found\n")
    opened = open_under(directory, [name], "follow")
    if opened is None:
        return text_response(404, "Not Found\n")
    if opened.is_dir:
        opened.close()
        return text_response(404, "Not Found\n")
    content_type = (None if wanted.content_type is None
                    else wanted.content_type.encode("latin-1"))
    # The app's own fields replace the file's of the same name: one Content-Type (a
    # Content-Type among them counts as `content_type`, so a 206's parts get it too), one
    # ETag, one Cache-Control, never two of a field a response carries once.
    # An ETag or Last-Modified of the app's is the validator the client gets and sends back
    # (If-None-Match, If-Range...): the conditions are evaluated against it, as werkzeug's
    # send_file(etag=...) does, not against the file's own, which the client never saw.
    extra: list[tuple[bytes, bytes]] = []
    names: set[bytes] = set()
    validators: dict[bytes, bytes] = {}
    for field, value in wanted.headers:
        lower = field.lower()
        if lower == b"content-type":
            if content_type is None:
                content_type = value
            continue
        if lower in (b"etag", b"last-modified"):
            validators.setdefault(lower, value)
        names.add(lower)
        extra.append((field, value))
    response = _server_for(directory).respond(
        request, opened, [name], content_type, etag=validators.get(b"etag"),
        last_modified=validators.get(b"last-modified"))
    if response.status in (200, 206) and wanted.download_name is not None:
        response.headers.append((b"Content-Disposition", _disposition(wanted.download_name)))
    if names:
        response.headers = [(field, value) for field, value in response.headers
                            if field.lower() not in names]
    response.headers.extend(extra)
    return response


def _disposition(name: str) -> bytes:
    from urllib.parse import quote
    if name.isascii() and name.isprintable() and '"' not in name and "\\" not in name:
        return f'attachment; filename="{name}"'.encode("ascii")
    # RFC 8187 attr-char: quote() keeps "/" by default, which is none; a lone surrogate
    # (a file name read with surrogateescape) is no UTF-8: replaced, not a 500
    extended = f"filename*=UTF-8''{quote(name, safe=_ATTR_EXTRA, errors='replace')}"
    # RFC 6266 appendix D: a plain `filename` first, for clients that read only that one
    # (curl -OJ saved "résumé.pdf" under the URL's name), when an ASCII form says enough
    fallback = _ascii_filename(name)
    if fallback is None:
        return f"attachment; {extended}".encode("ascii")
    return f'attachment; filename="{fallback}"; {extended}'.encode("ascii")


def _ascii_filename(name: str) -> str | None:
    """`name` without its accents (NFKD, as werkzeug's fallback), `"`, `\\` and control
    characters as `_`; None when little is left (`日本.pdf` would be a dotfile `.pdf`)."""
    simple = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    simple = "".join(char if char.isprintable() and char not in '"\\' else "_"
                     for char in simple).strip()
    if not simple or simple[0] == "." or not any(char.isalnum() for char in simple):
        return None
    return simple


_ATTR_EXTRA = "!#$&+^`|"  # attr-char beyond what quote() always keeps (ALPHA DIGIT _.-~)
