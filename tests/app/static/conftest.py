"""Fixtures for static-mount tests: a document root on disk, an in-process caller, a server."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reactor.app.application import App, build_app
from reactor.app.static import StaticMount
from reactor.app.types import FileBody, Headers, Offload, PartsBody, Request, Response
from tests.conftest import RunningServer, start_server

SECRET = b"TOP-SECRET-6b1f0c"
OLD = 1_600_000_000  # a fixed mtime (2020-09-13) so dates are predictable


@pytest.fixture
def www(tmp_path: Path) -> Path:
    """A document root with text, binary, nested, hidden and sidecar files, and a secret
    file next to (outside) the root."""
    root = tmp_path / "www"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "index.html").write_bytes(b"<h1>home</h1>\n")
    (root / "hello.txt").write_bytes(b"hello, world\n")
    (root / "data.bin").write_bytes(bytes(range(256)) * 4)
    (root / "style.css").write_bytes(b"body { color: red; }\n" * 200)
    (root / "sub" / "page.html").write_bytes(b"<p>page</p>\n")
    (root / "sub" / "deeper" / "x.json").write_bytes(b'{"x": 1}\n')
    (root / ".hidden").write_bytes(b"hidden\n")
    (root / "app.js").write_bytes(b"console.log('identity');\n" * 100)
    (root / "empty.txt").write_bytes(b"")
    for path in root.rglob("*"):
        os.utime(path, (OLD, OLD))
    (tmp_path / "secret.txt").write_bytes(SECRET + b"\n")
    return root


def make_request(method: str, path: str, headers: dict[str, str] | None = None,
                 query: str = "") -> Request:
    fields = [(k.lower().encode(), v.encode("latin-1")) for k, v in (headers or {}).items()]
    return Request(method, path, query, "1.1", Headers(fields))


def call(app: App, method: str, path: str, headers: dict[str, str] | None = None,
         query: str = "") -> Response:
    """Run the app as the connection would, Offloads included, on this thread."""
    result = app.open(make_request(method, path, headers, query)).respond()
    while type(result) is Offload:
        result = result.fn(*result.args)
    assert isinstance(result, Response)
    return result


def body_bytes(response: Response) -> bytes:
    """The body as the connection would send it (file ranges read and closed)."""
    body = response.body
    if type(body) is bytes:
        return body
    parts = body.parts if type(body) is PartsBody else [body]  # type: ignore[union-attr]
    out = []
    try:
        for part in parts:
            if type(part) is bytes:
                out.append(part)
            else:
                assert isinstance(part, FileBody)
                out.append(os.pread(part.file.fileno(), part.length, part.offset))
    finally:
        body.close()  # type: ignore[union-attr]
    return b"".join(out)


def header(response: Response, name: str) -> bytes | None:
    return response.header(name.lower().encode())


@pytest.fixture
def static_app(www: Path) -> Callable[..., App]:
    def make(**options) -> App:  # type: ignore[no-untyped-def]
        prefix = options.pop("prefix", "/")
        return build_app(directory=None, mounts=[StaticMount(prefix, www, **options)])
    return make


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    """`serve(*mounts)`: a real server on port 0 whose app has these mounts."""
    running: list[RunningServer] = []

    def start(*mounts: StaticMount, **build) -> RunningServer:  # type: ignore[no-untyped-def]
        logs = tmp_path / f"server{len(running)}"
        logs.mkdir()
        server = start_server(logs)
        running.append(server)
        server.server.http.app = build_app(directory=None, mounts=list(mounts), **build)
        return server

    yield start
    for server in running:
        server.stop()
