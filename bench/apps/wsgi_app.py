"""WSGI peer app, served by gunicorn (gthread) and waitress.

Files go out through ``wsgi.file_wrapper`` (sendfile under gunicorn); HTML pages
are gzip-compressed per request when accepted. The served directory comes from the
``BENCH_WWW`` environment variable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from common import (
    ECHO_PREFIX,
    FILES_PREFIX,
    TEXT_TYPE,
    content_type,
    gzip_bytes,
    resolve_file,
    wants_gzip,
    www_dir,
)

StartResponse = Callable[..., object]
WWW = www_dir()


def application(environ: dict, start_response: StartResponse) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    if environ["REQUEST_METHOD"] != "GET":
        return _small(start_response, "405 Method Not Allowed", b"method not allowed\n")
    if path.startswith(ECHO_PREFIX):
        return _small(start_response, "200 OK", path[len(ECHO_PREFIX) :].encode("latin-1"))
    if path.startswith(FILES_PREFIX):
        found = resolve_file(WWW, path[len(FILES_PREFIX) :])
        if found is not None:
            headers = [("Content-Type", content_type(found))]
            if wants_gzip(found, environ.get("HTTP_ACCEPT_ENCODING")):
                body = gzip_bytes(found.read_bytes())
                headers += [("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")]
                headers.append(("Content-Length", str(len(body))))
                start_response("200 OK", headers)
                return [body]
            headers.append(("Content-Length", str(found.stat().st_size)))
            start_response("200 OK", headers)
            f = found.open("rb")
            wrapper = environ.get("wsgi.file_wrapper")
            return wrapper(f, 65536) if wrapper else iter(lambda: f.read(65536), b"")
    return _small(start_response, "404 Not Found", b"not found\n")


def _small(start_response: StartResponse, status: str, body: bytes) -> list[bytes]:
    headers = [("Content-Type", TEXT_TYPE), ("Content-Length", str(len(body)))]
    start_response(status, headers)
    return [body]
