"""PUT and DELETE on document roots (`uploads=True`), over real sockets on real files."""

from __future__ import annotations

import gzip
import http.client
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from reactor.app.application import build_app
from reactor.app.handlers import FilesHandler
from reactor.app.router import Route
from reactor.app.static import GzipCache, StaticMount
from reactor.app.static.paths import write_location
from tests.conftest import (
    RawClient,
    RunningServer,
    request_bytes,
    upload_files,
    wait_until,
)

from .conftest import SECRET, make_request
from .test_escape import ESCAPES, RAW_BYTE_TARGETS

Serve = Callable[..., RunningServer]


def _fetch(server: RunningServer, method: str, path: str, body: bytes | None = None,
           headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data
    finally:
        conn.close()


def _temp_files(top: Path) -> list[str]:
    return [str(p) for p in top.rglob(".upload-*")]


def _snapshot(top: Path) -> dict[str, tuple]:
    """Every entry below `top` (links not followed, server log directories skipped)."""
    entries: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        if Path(dirpath) == top:
            dirnames[:] = [d for d in dirnames if not d.startswith("server")]
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            key = str(path.relative_to(top))
            if path.is_symlink():
                entries[key] = ("link", os.readlink(path))
            elif path.is_dir():
                entries[key] = ("dir",)
            else:
                entries[key] = ("file", path.read_bytes())
    return entries


# ---- routing: PUT streams, GET stays a plain mount route -------------------------------------


def test_only_put_is_a_stream_route_on_an_upload_mount(www: Path) -> None:
    app = build_app(directory=None, mounts=[StaticMount("/", www, uploads=True)])
    put = app.router.resolve(make_request("PUT", "/new.txt"))
    assert type(put) is Route and put.stream
    for method in ("GET", "HEAD", "DELETE", "OPTIONS"):
        route = app.router.resolve(make_request(method, "/hello.txt"))
        assert type(route) is Route and not route.stream and route.method == "*", method
    assert app.open(make_request("GET", "/hello.txt")).begin() is None
    plain = build_app(directory=None, mounts=[StaticMount("/", www)])
    route = plain.router.resolve(make_request("PUT", "/new.txt"))
    assert type(route) is Route and not route.stream  # the handler answers 405


def test_write_location_never_leaves_the_root(www: Path, tmp_path: Path) -> None:
    os.symlink("../secret.txt", www / "out")
    os.symlink("hello.txt", www / "in.txt")
    os.symlink(".hidden", www / "to-hidden")
    real = os.path.realpath(www)
    for policy in ("deny-outside", "follow"):
        assert write_location(str(www), ["out"], policy, dotfiles=False) is None
        assert write_location(str(www), ["in.txt"], policy, dotfiles=False) == (
            real, ["hello.txt"])
        assert write_location(str(www), ["to-hidden"], policy, dotfiles=False) is None
        assert write_location(str(www), ["to-hidden"], policy, dotfiles=True) == (
            real, [".hidden"])
    assert write_location(str(www), ["in.txt"], "deny", dotfiles=False) == (
        str(www), ["in.txt"])


# ---- PUT and DELETE ------------------------------------------------------------------------


def test_put_creates_201_then_replaces_204(serve: Serve, www: Path) -> None:
    server = serve(StaticMount("/", www, uploads=True), StaticMount("/deep", www / "sub",
                                                                     uploads=True))
    assert _fetch(server, "PUT", "/new.bin", b"\x00first\xff")[0] == 201
    assert (www / "new.bin").read_bytes() == b"\x00first\xff"
    assert _fetch(server, "PUT", "/new.bin", b"second")[0] == 204
    assert (www / "new.bin").read_bytes() == b"second"
    assert _fetch(server, "PUT", "/deep/deeper/%78.json", b"[]")[0] == 204
    assert (www / "sub" / "deeper" / "x.json").read_bytes() == b"[]"
    assert _fetch(server, "PUT", "/empty/zero", b"")[0] == 201  # no body: not streamed
    assert (www / "empty" / "zero").read_bytes() == b""
    assert oct((www / "new.bin").stat().st_mode & 0o777) == oct(0o644 & ~_umask())
    assert _temp_files(www) == []


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_put_five_mib_chunked_over_a_raw_socket(serve: Serve, www: Path) -> None:
    server = serve(StaticMount("/", www, uploads=True))
    data = os.urandom(5 * 1024 * 1024)
    with RawClient.to(server) as client:
        client.send(request_bytes("PUT", "/big.bin",
                                  {"Transfer-Encoding": "chunked"}))
        offset, size = 0, 1
        while offset < len(data):  # uneven chunk sizes, 1 byte to 256 KiB
            piece = data[offset:offset + size]
            client.send(b"%x\r\n%s\r\n" % (len(piece), piece))
            offset += len(piece)
            size = min(size * 3 + 7, 256 * 1024)
        client.send(b"0\r\n\r\n")
        assert client.read_response().status == 201
        client.send(request_bytes("GET", "/big.bin"))
        response = client.read_response()
        assert response.status == 200 and response.body == data
    assert (www / "big.bin").read_bytes() == data
    assert _temp_files(www) == []


def test_delete_204_then_404_and_409_for_a_directory(serve: Serve, www: Path) -> None:
    server = serve(StaticMount("/", www, uploads=True))
    assert _fetch(server, "DELETE", "/hello.txt")[0] == 204
    assert not (www / "hello.txt").exists()
    assert _fetch(server, "DELETE", "/hello.txt")[0] == 404
    assert _fetch(server, "GET", "/hello.txt")[0] == 404
    assert _fetch(server, "DELETE", "/nowhere/x.txt")[0] == 404
    for path in ("/sub", "/sub/", "/empty", "/", "/sub/page.html/."):
        assert _fetch(server, "DELETE", path)[0] == 409, path
    assert (www / "sub" / "page.html").exists() and (www / "empty").is_dir()


def test_uploads_off_answers_405_with_allow(serve: Serve, www: Path) -> None:
    before = _snapshot(www)
    server = serve(StaticMount("/", www))
    for method in ("PUT", "DELETE", "POST"):
        status, headers, _ = _fetch(server, method, "/hello.txt", b"x")
        assert (status, headers["allow"]) == (405, "GET, HEAD, OPTIONS"), method
    status, headers, _ = _fetch(server, "OPTIONS", "/hello.txt")
    assert (status, headers["allow"]) == (204, "GET, HEAD, OPTIONS")
    assert _snapshot(www) == before


def test_allow_lists_put_and_delete_when_uploads_are_on(serve: Serve, www: Path) -> None:
    server = serve(StaticMount("/", www, uploads=True))
    status, headers, _ = _fetch(server, "OPTIONS", "/hello.txt")
    assert (status, headers["allow"]) == (204, "DELETE, GET, HEAD, OPTIONS, PUT")
    status, headers, _ = _fetch(server, "POST", "/hello.txt", b"x")
    assert (status, headers["allow"]) == (405, "DELETE, GET, HEAD, OPTIONS, PUT")
    assert (www / "hello.txt").read_bytes() == b"hello, world\n"


def test_put_to_a_directory_or_a_missing_parent_is_409(serve: Serve, www: Path) -> None:
    before = _snapshot(www)
    server = serve(StaticMount("/", www, uploads=True))
    for path in ("/", "/sub", "/sub/", "/new-dir/", "/empty/", "/new.txt/.", "/hello.txt/%2e"):
        assert _fetch(server, "PUT", path, b"x")[0] == 409, path  # `/a/.` is `/a/`
    for path in ("/missing/file.txt", "/sub/missing/deeper/file.txt", "/hello.txt/x"):
        status, _, body = _fetch(server, "PUT", path, b"x")
        assert status == 409 and b"parent" in body, path
    assert _snapshot(www) == before


def test_dotfiles_follow_the_mount(serve: Serve, www: Path) -> None:
    server = serve(StaticMount("/", www, uploads=True),
                   StaticMount("/dots", www, uploads=True, dotfiles=True))
    assert _fetch(server, "PUT", "/.env", b"x")[0] == 404
    assert _fetch(server, "DELETE", "/.hidden")[0] == 404
    assert not (www / ".env").exists() and (www / ".hidden").exists()
    assert _fetch(server, "PUT", "/dots/.env", b"x")[0] == 201
    assert _fetch(server, "DELETE", "/dots/.hidden")[0] == 204
    assert (www / ".env").read_bytes() == b"x" and not (www / ".hidden").exists()


def test_a_name_too_long_to_exist_is_404(serve: Serve, www: Path) -> None:
    server = serve(StaticMount("/", www, uploads=True))
    for method in ("PUT", "DELETE", "GET"):
        assert _fetch(server, method, "/" + "a" * 256, b"x")[0] == 404, method
    assert _fetch(server, "PUT", "/" + "a" * 255, b"x")[0] == 201
    assert FilesHandler(str(www))._resolve(b"a" * 256) is None  # /files shares the rule


# ---- path safety ---------------------------------------------------------------------------


def _raw(server: RunningServer, method: bytes, target: bytes, body: bytes = b"") -> int:
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(method + b" " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    response = b"".join(chunks)
    assert SECRET not in response
    return int(response.split(b" ", 2)[1])


@pytest.fixture
def escape_server(serve: Serve, www: Path, tmp_path: Path) -> RunningServer:
    os.symlink("../secret.txt", www / "out")
    os.symlink(str(tmp_path), www / "outdir")
    os.symlink("loop", www / "loop")
    return serve(StaticMount("/", www, uploads=True),
                 StaticMount("/static", www, uploads=True),
                 StaticMount("/denied", www, uploads=True, symlinks="deny"),
                 StaticMount("/follow", www, uploads=True, symlinks="follow"))


def test_escape_corpus_writes_and_deletes_nothing(escape_server: RunningServer,
                                                  tmp_path: Path, www: Path) -> None:
    """Every escape is refused (404, 409 for a missing parent, 400 from the parser), except
    a double-encoded one that decodes once to a plain name: written, then deleted, inside."""
    literal = b"/%252e%252e%252fsecret.txt"
    before = _snapshot(tmp_path)
    failures = []
    for prefix in (b"", b"/static", b"/denied", b"/follow"):
        targets = [prefix + path.encode() for path in ESCAPES]
        targets += [prefix + target for target in RAW_BYTE_TARGETS]
        for target in targets:
            expected = {400, 404, 409}
            if target == prefix + literal:
                expected = {201, 204}
            for method, body in ((b"PUT", b"PWNED"), (b"PUT", b""), (b"DELETE", b"")):
                status = _raw(escape_server, method, target, body)
                if status not in expected:
                    failures.append((method, target, status))
                if status == 201:
                    assert (www / "%2e%2e%2fsecret.txt").read_bytes() == b"PWNED"
    assert failures == []
    assert _snapshot(tmp_path) == before
    assert (tmp_path / "secret.txt").read_bytes() == SECRET + b"\n"


def test_a_link_out_of_the_root_is_never_written_through(escape_server: RunningServer,
                                                         www: Path, tmp_path: Path) -> None:
    for prefix in ("", "/static", "/denied", "/follow"):
        assert _fetch(escape_server, "PUT", f"{prefix}/out", b"PWNED")[0] == 404
        assert _fetch(escape_server, "PUT", f"{prefix}/outdir/new.txt", b"PWNED")[0] == 404
        assert _fetch(escape_server, "PUT", f"{prefix}/outdir/secret.txt", b"PWNED")[0] == 404
        assert _fetch(escape_server, "DELETE", f"{prefix}/outdir/secret.txt")[0] == 404
        assert _fetch(escape_server, "PUT", f"{prefix}/loop", b"PWNED")[0] == 404
    assert (tmp_path / "secret.txt").read_bytes() == SECRET + b"\n"
    assert os.readlink(www / "out") == "../secret.txt"
    assert not (tmp_path / "new.txt").exists()
    assert _fetch(escape_server, "GET", "/follow/out")[2] == SECRET + b"\n"  # reads may


def test_a_link_inside_the_root_is_written_through_unless_denied(serve: Serve, www: Path
                                                                 ) -> None:
    os.symlink("hello.txt", www / "alias.txt")
    server = serve(StaticMount("/", www, uploads=True),
                   StaticMount("/denied", www, uploads=True, symlinks="deny"))
    assert _fetch(server, "PUT", "/denied/alias.txt", b"no")[0] == 404
    assert _fetch(server, "DELETE", "/denied/alias.txt")[0] == 404
    assert _fetch(server, "PUT", "/alias.txt", b"new hello")[0] == 204
    assert os.readlink(www / "alias.txt") == "hello.txt"
    assert (www / "hello.txt").read_bytes() == b"new hello"
    assert _fetch(server, "GET", "/alias.txt")[2] == b"new hello"


# ---- conditional writes --------------------------------------------------------------------


def test_conditional_put_and_delete_use_the_real_etag(serve: Serve, www: Path) -> None:
    server = serve(StaticMount("/", www, uploads=True))
    etag = _fetch(server, "GET", "/hello.txt")[1]["etag"]
    assert _fetch(server, "PUT", "/hello.txt", b"v2", {"If-Match": '"nope"'})[0] == 412
    assert _fetch(server, "PUT", "/hello.txt", b"v2", {"If-Match": f"W/{etag}"})[0] == 412
    assert (www / "hello.txt").read_bytes() == b"hello, world\n"
    assert _fetch(server, "PUT", "/hello.txt", b"v2", {"If-Match": f'"x", {etag}'})[0] == 204
    assert (www / "hello.txt").read_bytes() == b"v2"
    # the old tag is stale now: a lost update is refused, for DELETE as well
    assert _fetch(server, "PUT", "/hello.txt", b"v3", {"If-Match": etag})[0] == 412
    assert _fetch(server, "DELETE", "/hello.txt", None, {"If-Match": etag})[0] == 412
    assert (www / "hello.txt").read_bytes() == b"v2"
    new_etag = _fetch(server, "HEAD", "/hello.txt")[1]["etag"]
    assert new_etag != etag
    assert _fetch(server, "DELETE", "/hello.txt", None, {"If-Match": new_etag})[0] == 204
    assert _fetch(server, "DELETE", "/hello.txt", None, {"If-Match": "*"})[0] == 404


def test_the_gzip_etag_of_the_same_file_matches_too(serve: Serve, www: Path) -> None:
    server = serve(StaticMount("/", www, uploads=True))
    status, headers, _ = _fetch(server, "GET", "/style.css", None, {"Accept-Encoding": "gzip"})
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert headers["etag"].endswith('-gz"')
    assert _fetch(server, "PUT", "/style.css", b"a{}", {"If-Match": headers["etag"]})[0] == 204


@pytest.mark.parametrize(("exists", "headers", "status"), [
    (True, {"If-None-Match": "*"}, 412),
    (False, {"If-None-Match": "*"}, 201),
    (False, {"If-Match": "*"}, 412),
    (True, {"If-Match": "*"}, 204),
    (True, {"If-Unmodified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"}, 412),
    (True, {"If-Unmodified-Since": "Sat, 01 Jan 2050 00:00:00 GMT"}, 204),
])
def test_conditional_put_star_and_dates(serve: Serve, www: Path, exists: bool,
                                        headers: dict[str, str], status: int) -> None:
    server = serve(StaticMount("/", www, uploads=True))
    name = "hello.txt" if exists else "fresh.txt"
    assert _fetch(server, "PUT", f"/{name}", b"new", headers)[0] == status
    if status == 412:
        assert (www / name).exists() == exists and (not exists or
                                                    (www / name).read_bytes() != b"new")
    else:
        assert (www / name).read_bytes() == b"new"
    assert _temp_files(www) == []


def test_a_refused_put_is_answered_before_the_body(serve: Serve, www: Path) -> None:
    server = serve(StaticMount("/", www, uploads=True))
    with RawClient.to(server) as client:
        client.send(request_bytes("PUT", "/hello.txt", {
            "Content-Length": "1000", "Expect": "100-continue", "If-None-Match": "*"}))
        response = client.read_response()
        assert response.status == 412  # not 100 Continue: the body is never needed
    assert (www / "hello.txt").read_bytes() == b"hello, world\n"


def test_a_put_of_a_range_is_refused_before_the_body_and_the_file_kept(serve: Serve,
                                                                         www: Path) -> None:
    # RFC 9110 14.5: a PUT with Content-Range MUST be a 400; writing it would replace the
    # file with a piece of it.
    server = serve(StaticMount("/", www, uploads=True))
    with RawClient.to(server) as client:
        client.send(request_bytes("PUT", "/hello.txt", {
            "Content-Length": "2", "Content-Range": "bytes 0-1/13", "Expect": "100-continue"}))
        response = client.read_response()
        assert response.status == 400 and b"Content-Range" in response.body
    assert (www / "hello.txt").read_bytes() == b"hello, world\n"
    assert _temp_files(www) == []


# ---- aborts, races, caches -----------------------------------------------------------------


def test_client_killed_mid_put_leaves_no_temp_file(serve: Serve, www: Path,
                                                   upload_kind: str) -> None:
    server = serve(StaticMount("/", www, uploads=True))
    with RawClient.to(server) as client:
        client.send(request_bytes("PUT", "/sub/half.bin", {"Content-Length": "1000000"})
                    + b"x" * 300_000)
        assert wait_until(lambda: upload_files(www / "sub") != [])
        assert len(_temp_files(www)) == (upload_kind == "named")
    assert wait_until(lambda: upload_files(www / "sub") == [] and _temp_files(www) == [])
    assert not (www / "sub" / "half.bin").exists()
    assert _fetch(server, "GET", "/hello.txt")[0] == 200


def test_concurrent_puts_of_one_path_end_with_one_whole_body(serve: Serve, www: Path) -> None:
    server = serve(StaticMount("/", www, uploads=True))
    bodies = [bytes([65 + i]) * (200_000 + i) for i in range(8)]
    statuses: list[int] = []

    def put(body: bytes) -> None:
        statuses.append(_fetch(server, "PUT", "/shared.bin", body)[0])

    threads = [threading.Thread(target=put, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert len(statuses) == len(bodies) and set(statuses) <= {201, 204}
    assert (www / "shared.bin").read_bytes() in bodies
    assert _fetch(server, "GET", "/shared.bin")[2] in bodies
    assert _temp_files(www) == []


def test_racing_create_only_puts_have_one_winner(serve: Serve, www: Path) -> None:
    server = serve(StaticMount("/", www, uploads=True))
    bodies = [bytes([97 + i]) * 100_000 for i in range(6)]
    statuses: list[int] = []

    def put(body: bytes) -> None:
        statuses.append(_fetch(server, "PUT", "/once.bin", body, {"If-None-Match": "*"})[0])

    threads = [threading.Thread(target=put, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert sorted(statuses) == [201] + [412] * (len(bodies) - 1)
    assert (www / "once.bin").read_bytes() in bodies
    assert _temp_files(www) == []


def test_get_after_put_serves_the_new_bytes_and_the_new_gzip(serve: Serve, www: Path) -> None:
    cache = GzipCache()
    server = serve(StaticMount("/", www, uploads=True), gzip_cache=cache)
    gz = {"Accept-Encoding": "gzip"}
    old = (www / "style.css").read_bytes()
    for _ in range(2):  # the second from a cache
        status, headers, body = _fetch(server, "GET", "/style.css", None, gz)
        assert headers["content-encoding"] == "gzip" and gzip.decompress(body) == old
    assert (cache.misses, len(cache)) == (1, 1)  # compressed once
    new = old.replace(b"red", b"tan")  # same size: only inode and mtime tell them apart
    assert _fetch(server, "PUT", "/style.css", new)[0] == 204
    assert len(cache) == 0  # forgotten at once
    status, headers, body = _fetch(server, "GET", "/style.css", None, gz)
    assert (status, headers["content-encoding"]) == (200, "gzip")
    assert gzip.decompress(body) == new
    assert _fetch(server, "GET", "/style.css")[2] == new
    assert _fetch(server, "DELETE", "/style.css")[0] == 204
    assert len(cache) == 0
    assert _fetch(server, "GET", "/style.css", None, gz)[0] == 404
