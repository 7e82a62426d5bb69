"""Path-escape corpus: no request may read a byte outside the document root.

Every target below is sent raw over a socket to three mounts (at `/`, `/static` and, with
`symlinks="deny"`, `/denied`) of a root that sits next to a secret file and contains
symlinks that lead out of it and into a loop. Each answer must be a 404 and must not
contain the secret (nor /etc/passwd); a few raw-byte targets may instead be refused with
400 by the protocol layer before they reach the application.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from reactor.app.static import StaticMount
from tests.conftest import RunningServer

from .conftest import SECRET

ESCAPES = [
    "/../secret.txt",
    "/../../../../../../etc/passwd",
    "/%2e%2e/secret.txt",
    "/%2E%2E/secret.txt",
    "/%2E%2e/secret.txt",
    "/.%2e/secret.txt",
    "/%2e./secret.txt",
    "/%252e%252e/secret.txt",
    "/%252e%252e%252fsecret.txt",
    "/..%2fsecret.txt",
    "/..%2Fsecret.txt",
    "/%2e%2e%2fsecret.txt",
    "/sub/../../secret.txt",
    "/sub/%2e%2e/%2e%2e/secret.txt",
    "/sub%2f..%2f..%2fsecret.txt",
    "/..\\secret.txt",
    "/sub\\..\\..\\secret.txt",
    "/..%5csecret.txt",
    "/..%5Csecret.txt",
    "/%5c..%5csecret.txt",
    "/%2e%2e%5csecret.txt",
    "/%00/../secret.txt",
    "/secret.txt%00",
    "/hello.txt%00.html",
    "/.%00./secret.txt",
    "/%c0%ae%c0%ae/secret.txt",
    "/%c0%2e%c0%2e/secret.txt",
    "/%e0%80%ae%e0%80%ae/secret.txt",
    "/%c0%af..%c0%afsecret.txt",
    "/%u002e%u002e/secret.txt",
    "/..;/secret.txt",
    "//etc/passwd",
    "/%2fetc%2fpasswd",
    "///etc///passwd",
    "/out",
    "/out/",
    "/outdir/secret.txt",
    "/outdir%2fsecret.txt",
    "/outdir/",
    "/outdir",
    "/loop",
    "/loop/",
    "/loop/x",
    "/.hidden",
    "/%2ehidden",
    "/sub/%2e%2e%2f.hidden",
]
# Refused by the HTTP parser (400) or answered 404 by the app: both are fine.
RAW_BYTE_TARGETS = [b"/\xc0\xae\xc0\xae/secret.txt", b"/..\x00/secret.txt",
                    b"/\x2e\x2e/\x2e\x2e/secret.txt"]


def _raw_request(server: RunningServer, target: bytes, method: bytes = b"GET") -> bytes:
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(method + b" " + target + b" HTTP/1.1\r\nHost: x\r\n"
                     b"Connection: close\r\n\r\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


@pytest.fixture
def escape_server(serve: Callable[..., RunningServer], www: Path, tmp_path: Path
                  ) -> RunningServer:
    os.symlink("../secret.txt", www / "out")
    os.symlink(str(tmp_path), www / "outdir")
    os.symlink("loop", www / "loop")
    return serve(StaticMount("/", www, listing=True),
                 StaticMount("/static", www, listing=True),
                 StaticMount("/denied", www, listing=True, symlinks="deny"),
                 StaticMount("/list", www, index=None, listing=True),
                 StaticMount("/list-deny", www, index=None, listing=True, symlinks="deny"))


@pytest.mark.parametrize("prefix", ["", "/static", "/denied"])
def test_escape_corpus_is_all_404(escape_server: RunningServer, prefix: str) -> None:
    failures = []
    for path in ESCAPES:
        for method in (b"GET", b"HEAD"):
            response = _raw_request(escape_server, (prefix + path).encode(), method)
            if _status(response) != 404 or SECRET in response or b"root:x:" in response:
                failures.append((method, prefix + path, response[:200]))
    assert failures == []


def test_escape_raw_bytes(escape_server: RunningServer) -> None:
    for prefix in (b"", b"/static", b"/denied"):
        for target in RAW_BYTE_TARGETS:
            response = _raw_request(escape_server, prefix + target)
            assert _status(response) in (400, 404), target
            assert SECRET not in response


def test_escape_prefix_boundaries(escape_server: RunningServer) -> None:
    for target in ("/static/../secret.txt", "/static%2f..%2fsecret.txt",
                   "/static/..%2f..%2fsecret.txt", "/static/%2e%2e/%2e%2e/secret.txt",
                   "/staticx/../secret.txt", "http://x/../secret.txt",
                   "http://x/static/%2e%2e/secret.txt"):
        response = _raw_request(escape_server, target.encode())
        assert _status(response) == 404, target
        assert SECRET not in response


def test_listings_do_not_show_links_out(escape_server: RunningServer) -> None:
    for prefix in (b"/list", b"/list-deny"):
        response = _raw_request(escape_server, prefix + b"/")
        assert _status(response) == 200 and b'href="hello.txt"' in response
        for name in (b"out", b"outdir/", b"loop", b".hidden"):
            assert b'href="%s"' % name not in response
        response = _raw_request(escape_server, prefix + b"/outdir/")
        assert _status(response) == 404 and SECRET not in response


def test_legit_paths_still_work(escape_server: RunningServer) -> None:
    for prefix in ("", "/static", "/denied"):
        response = _raw_request(escape_server, f"{prefix}/hello.txt".encode())
        assert _status(response) == 200 and response.endswith(b"hello, world\n")
        assert _status(_raw_request(escape_server, f"{prefix}/sub".encode())) == 301
        response = _raw_request(escape_server, f"{prefix}/sub/./page.html".encode())
        assert _status(response) == 200
        response = _raw_request(escape_server, f"{prefix}/%68ello.txt".encode())
        assert _status(response) == 200


def test_no_handler_errors_logged(escape_server: RunningServer) -> None:
    for path in ESCAPES:
        _raw_request(escape_server, path.encode())
    escape_server.stop()
    assert b"handler-error" not in escape_server.error_log.read_bytes()
