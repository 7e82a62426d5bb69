"""The static mount through the app, without sockets: statuses, headers, representations."""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from email import message_from_bytes
from pathlib import Path

import pytest

from reactor.app.application import App, build_app
from reactor.app.router import RouteError
from reactor.app.static import GzipCache, StaticMount
from reactor.app.static.conditional import http_date
from reactor.app.types import FileBody, Offload, PartsBody, StreamBody

from .conftest import OLD, body_bytes, call, header, make_request

LM = http_date(OLD).decode()


def test_get_file(static_app: Callable[..., App], www: Path) -> None:
    response = call(static_app(), "GET", "/hello.txt")
    assert response.status == 200
    assert body_bytes(response) == b"hello, world\n"
    info = os.stat(www / "hello.txt")
    assert header(response, "Content-Type") == b"text/plain; charset=utf-8"
    assert header(response, "Last-Modified") == LM.encode()
    assert header(response, "ETag") == b'"%x-%x-%x"' % (info.st_ino, info.st_size,
                                                        info.st_mtime_ns)
    assert header(response, "Accept-Ranges") == b"bytes"
    assert header(response, "Vary") == b"Accept-Encoding"
    assert header(response, "Cache-Control") is None
    assert header(response, "Content-Encoding") is None


def test_binary_file_has_no_vary(static_app: Callable[..., App]) -> None:
    response = call(static_app(), "GET", "/data.bin")
    assert header(response, "Content-Type") == b"application/octet-stream"
    assert header(response, "Vary") is None
    assert body_bytes(response) == bytes(range(256)) * 4


def test_index_and_redirect(static_app: Callable[..., App]) -> None:
    app = static_app()
    assert body_bytes(call(app, "GET", "/")) == b"<h1>home</h1>\n"
    response = call(app, "GET", "/sub", query="a=1&b=%20")
    assert response.status == 301
    assert header(response, "Location") == b"/sub/?a=1&b=%20"
    assert call(app, "GET", "/sub/").status == 404  # no index.html, listing off
    assert call(app, "GET", "/hello.txt/").status == 404


def test_redirect_is_built_from_clean_segments(static_app: Callable[..., App]) -> None:
    response = call(static_app(), "GET", "//sub")
    assert header(response, "Location") == b"/sub/"  # never `//sub/`, a host-relative URL
    response = call(static_app(prefix="/static"), "GET", "/static")
    assert header(response, "Location") == b"/static/"


def test_listing_when_enabled(static_app: Callable[..., App]) -> None:
    app = static_app(listing=True)
    response = call(app, "GET", "/sub/")
    assert response.status == 200
    assert header(response, "Content-Type") == b"text/html; charset=utf-8"
    page = body_bytes(response)
    assert page.index(b'href="deeper/"') < page.index(b'href="page.html"')
    response = call(app, "GET", "/", {"Accept": "application/json"})
    assert response.status == 200  # index.html wins over listing
    response = call(app, "GET", "/empty/", {"Accept": "application/json"})
    assert body_bytes(response) == b'{"path":"/empty/","entries":[]}\n'


def test_dotfiles_hidden_unless_allowed(static_app: Callable[..., App]) -> None:
    assert call(static_app(), "GET", "/.hidden").status == 404
    assert body_bytes(call(static_app(dotfiles=True), "GET", "/.hidden")) == b"hidden\n"


def test_methods(static_app: Callable[..., App]) -> None:
    app = static_app()
    response = call(app, "OPTIONS", "/hello.txt")
    assert (response.status, header(response, "Allow")) == (204, b"GET, HEAD, OPTIONS")
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        response = call(app, method, "/hello.txt")
        assert (response.status, header(response, "Allow")) == (405, b"GET, HEAD, OPTIONS")
    assert call(app, "BREW", "/hello.txt").status == 501


def test_routes_win_over_mount(static_app: Callable[..., App], www: Path) -> None:
    (www / "echo").mkdir()
    (www / "echo" / "x").write_text("from disk")
    (www / "user-agent").write_text("from disk")
    app = static_app()
    assert body_bytes(call(app, "GET", "/echo/x")) == b"x"
    assert call(app, "GET", "/user-agent", {"User-Agent": "ua"}).body == b"ua"
    assert call(app, "GET", "/echo/x/y").status == 404  # no route matches: the mount, 404


def test_without_mounts_root_stays_empty_200() -> None:
    response = call(build_app(directory=None), "GET", "/")
    assert (response.status, response.body) == (200, b"")


def test_longest_prefix_wins(www: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "hello.txt").write_text("other")
    app = build_app(directory=None, mounts=[StaticMount("/", www),
                                            StaticMount("/assets/", other)])
    assert body_bytes(call(app, "GET", "/assets/hello.txt")) == b"other"
    assert body_bytes(call(app, "GET", "/hello.txt")) == b"hello, world\n"
    assert call(app, "GET", "/assetsx/hello.txt").status == 404  # a prefix is whole segments
    assert call(app, "GET", "/assets").status == 301


def test_duplicate_prefix_is_an_error(www: Path) -> None:
    with pytest.raises(RouteError):
        build_app(directory=None, mounts=[StaticMount("/a", www), StaticMount("/a/", www)])


def test_cache_control_per_mount(static_app: Callable[..., App]) -> None:
    response = call(static_app(cache_control="public, max-age=60"), "GET", "/hello.txt")
    assert header(response, "Cache-Control") == b"public, max-age=60"
    response = call(static_app(cache_control="max-age=5"), "GET", "/hello.txt",
                    {"If-None-Match": "*"})
    assert response.status == 304
    assert header(response, "Cache-Control") == b"max-age=5"


def test_conditionals(static_app: Callable[..., App]) -> None:
    app = static_app()
    etag = header(call(app, "GET", "/hello.txt"), "ETag").decode()  # type: ignore[union-attr]
    response = call(app, "GET", "/hello.txt", {"If-None-Match": etag})
    assert response.status == 304 and response.body == b""
    assert [k for k, _ in response.headers] == [b"Last-Modified", b"ETag", b"Vary"]
    assert call(app, "HEAD", "/hello.txt", {"If-Modified-Since": LM}).status == 304
    assert call(app, "GET", "/hello.txt", {"If-Match": '"nope"'}).status == 412
    assert call(app, "GET", "/hello.txt", {"If-Match": etag}).status == 200
    assert call(app, "GET", "/hello.txt",
                {"If-Unmodified-Since": "Thu, 01 Jan 2015 00:00:00 GMT"}).status == 412


def test_single_range(static_app: Callable[..., App]) -> None:
    response = call(static_app(), "GET", "/data.bin", {"Range": "bytes=10-19"})
    assert response.status == 206
    assert header(response, "Content-Range") == b"bytes 10-19/1024"
    assert body_bytes(response) == (bytes(range(256)) * 4)[10:20]


def test_multiple_ranges_from_memory_and_from_files(static_app: Callable[..., App],
                                                     www: Path) -> None:
    big = os.urandom(200_000)
    (www / "big.bin").write_bytes(big)
    app = static_app()
    for name, data in (("data.bin", bytes(range(256)) * 4), ("big.bin", big)):
        response = call(app, "GET", f"/{name}", {"Range": "bytes=-3, 0-1,100-199"})
        assert response.status == 206
        assert type(response.body) is (PartsBody if name == "big.bin" else bytes)
        content_type = header(response, "Content-Type")
        raw = b"Content-Type: " + content_type + b"\r\n\r\n" + body_bytes(response)  # type: ignore[operator]
        parts = message_from_bytes(raw).get_payload()
        size = len(data)
        assert [p["Content-Range"] for p in parts] == [
            f"bytes {size - 3}-{size - 1}/{size}", f"bytes 0-1/{size}",
            f"bytes 100-199/{size}"]
        assert [p.get_payload(decode=True) for p in parts] == [data[-3:], data[0:2],
                                                               data[100:200]]


def test_range_edge_cases(static_app: Callable[..., App]) -> None:
    app = static_app()
    response = call(app, "GET", "/data.bin", {"Range": "bytes=5000-"})
    assert response.status == 416
    assert header(response, "Content-Range") == b"bytes */1024"
    assert call(app, "GET", "/data.bin", {"Range": "bytes=oops"}).status == 200
    assert call(app, "GET", "/data.bin", {"Range": "bytes=0-0"}).status == 206
    assert call(app, "HEAD", "/data.bin", {"Range": "bytes=0-0"}).status == 200
    assert call(app, "GET", "/empty.txt", {"Range": "bytes=0-"}).status == 200
    many = "bytes=" + ",".join(f"{i}-{i}" for i in range(0, 40, 2))
    assert call(app, "GET", "/data.bin", {"Range": many}).status == 200
    assert call(static_app(max_ranges=32), "GET", "/data.bin", {"Range": many}).status == 206


def test_if_range(static_app: Callable[..., App]) -> None:
    app = static_app()
    etag = header(call(app, "GET", "/data.bin"), "ETag").decode()  # type: ignore[union-attr]
    ranged = {"Range": "bytes=0-9"}
    assert call(app, "GET", "/data.bin", {**ranged, "If-Range": etag}).status == 206
    assert call(app, "GET", "/data.bin", {**ranged, "If-Range": LM}).status == 206
    assert call(app, "GET", "/data.bin", {**ranged, "If-Range": '"stale"'}).status == 200
    assert call(app, "GET", "/data.bin",
                {**ranged, "If-Range": "Thu, 01 Jan 2015 00:00:00 GMT"}).status == 200


def test_gzip_from_cache(static_app: Callable[..., App], www: Path) -> None:
    cache = GzipCache()
    app = build_app(directory=None, mounts=[StaticMount("/", www)], gzip_cache=cache)
    identity = call(app, "GET", "/style.css")
    response = call(app, "GET", "/style.css", {"Accept-Encoding": "gzip, br"})
    assert header(response, "Content-Encoding") == b"gzip"
    assert header(response, "Vary") == b"Accept-Encoding"
    assert header(response, "Accept-Ranges") is None
    assert header(response, "ETag") == header(identity, "ETag")[:-1] + b'-gz"'  # type: ignore[index]
    assert gzip.decompress(body_bytes(response)) == (www / "style.css").read_bytes()
    assert len(cache) == 1
    again = call(app, "GET", "/style.css", {"Accept-Encoding": "gzip"})
    assert again.body is response.body and cache.misses == 1  # compressed once
    conditional = call(app, "GET", "/style.css", {"Accept-Encoding": "gzip",
                                                  "If-None-Match": header(response, "ETag")
                                                  .decode()})  # type: ignore[union-attr]
    assert conditional.status == 304
    assert call(app, "GET", "/style.css", {"If-None-Match": header(response, "ETag")
                                           .decode()}).status == 200  # type: ignore[union-attr]


def test_gzip_skipped_for_range_binary_and_refusal(static_app: Callable[..., App]) -> None:
    app = static_app()
    gz = {"Accept-Encoding": "gzip"}
    assert call(app, "GET", "/style.css", {**gz, "Range": "bytes=0-9"}).status == 206
    assert header(call(app, "GET", "/style.css", {**gz, "Range": "bytes=x"}),
                  "Content-Encoding") is None
    assert header(call(app, "GET", "/data.bin", gz), "Content-Encoding") is None
    assert header(call(app, "GET", "/style.css", {"Accept-Encoding": "gzip;q=0"}),
                  "Content-Encoding") is None


def test_gzip_respects_policy_and_file_cap(www: Path) -> None:
    from reactor.app.application import CompressionPolicy
    off = build_app(directory=None, mounts=[StaticMount("/", www)],
                    compression=CompressionPolicy(enabled=False))
    gz = {"Accept-Encoding": "gzip"}
    assert header(call(off, "GET", "/style.css", gz), "Content-Encoding") is None
    small_cap = build_app(directory=None, mounts=[StaticMount("/", www)],
                          gzip_cache=GzipCache(file_max_bytes=100))
    response = call(small_cap, "GET", "/style.css", gz)
    # over the cache's per-file cap: gzipped while sent, piece by piece, not cached
    assert header(response, "Content-Encoding") == b"gzip"
    assert header(response, "Vary") == b"Accept-Encoding"
    assert isinstance(response.body, StreamBody)
    pieces = []
    while piece := response.body.produce():
        pieces.append(piece)
    response.body.close()
    assert gzip.decompress(b"".join(pieces)) == (www / "style.css").read_bytes()


def test_sidecar(static_app: Callable[..., App], www: Path) -> None:
    sidecar = www / "app.js.gz"
    sidecar.write_bytes(gzip.compress(b"console.log('sidecar');\n"))
    os.utime(sidecar, (OLD + 10, OLD + 10))
    app = static_app()
    response = call(app, "GET", "/app.js", {"Accept-Encoding": "gzip"})
    assert header(response, "Content-Type") == b"application/javascript; charset=utf-8"
    assert header(response, "Content-Encoding") == b"gzip"
    info = os.stat(sidecar)
    assert header(response, "ETag") == b'"%x-%x-%x"' % (info.st_ino, info.st_size,
                                                        info.st_mtime_ns)
    assert gzip.decompress(body_bytes(response)) == b"console.log('sidecar');\n"
    os.utime(sidecar, (OLD - 10, OLD - 10))  # older than the file: stale, not used
    response = call(app, "GET", "/app.js", {"Accept-Encoding": "gzip"})
    assert gzip.decompress(body_bytes(response)) == (www / "app.js").read_bytes()
    assert header(response, "ETag").endswith(b'-gz"')  # type: ignore[union-attr]


def test_large_file_is_a_file_body_not_bytes(static_app: Callable[..., App], www: Path
                                             ) -> None:
    (www / "large.bin").write_bytes(b"L" * (3 * 1024 * 1024))
    response = call(static_app(), "GET", "/large.bin")
    body = response.body
    assert type(body) is FileBody and (body.offset, body.length) == (0, 3 * 1024 * 1024)
    body.close()
    response = call(static_app(), "GET", "/large.bin", {"Range": "bytes=5-9,-5"})
    parts = response.body.parts  # type: ignore[union-attr]
    files = [p for p in parts if type(p) is FileBody]
    assert [(f.offset, f.length) for f in files] == [(5, 5), (3 * 1024 * 1024 - 5, 5)]
    # the parts share one descriptor (one per range let a multi-range request hold up to
    # max_ranges fds), closed with the last part
    [fd] = {f.file.fileno() for f in files}
    files[0].close()
    os.fstat(fd)  # still open for the second part
    response.body.close()  # type: ignore[union-attr]
    with pytest.raises(OSError):
        os.fstat(fd)


def test_head_reads_nothing_and_matches_get(static_app: Callable[..., App]) -> None:
    app = static_app()
    head = call(app, "HEAD", "/hello.txt")  # the pool path: the length, no body read
    get = call(app, "GET", "/hello.txt")
    assert head.headers == get.headers
    assert type(head.body) is FileBody and head.body.length == len(get.body)  # type: ignore[arg-type]
    head.body.close()  # type: ignore[union-attr]


def test_bad_paths_are_404_without_touching_the_disk(static_app: Callable[..., App]) -> None:
    app = static_app()
    for path in ("/%2e%2e/secret.txt", "/a%00b", "/%c0%ae%c0%ae/x", "/..%5csecret.txt",
                 "/.%2e/secret.txt", "/%2e%2e%2fsecret.txt"):
        result = app.open(make_request("GET", path)).respond()
        assert type(result) is not Offload, path  # answered on the loop
        assert result.status == 404, path  # type: ignore[union-attr]


def test_accept_encoding_on_several_lines(www: Path) -> None:
    from reactor.app.types import Headers, Request
    app = build_app(directory=None, mounts=[StaticMount("/", www)])
    request = Request("GET", "/style.css", "", "1.1",
                      Headers([(b"accept-encoding", b"br"), (b"accept-encoding", b"gzip")]))
    result = app.open(request).respond()
    while type(result) is Offload:
        result = result.fn(*result.args)
    assert result.header(b"content-encoding") == b"gzip"  # type: ignore[union-attr]


@pytest.mark.parametrize("symlinks", ["deny-outside", "follow", "deny"])
def test_name_too_long_is_404(static_app: Callable[..., App], symlinks: str) -> None:
    app = static_app(symlinks=symlinks)
    assert call(app, "GET", "/" + "a" * 300).status == 404
    assert call(app, "GET", "/" + "/".join(["d" * 200] * 30)).status == 404
