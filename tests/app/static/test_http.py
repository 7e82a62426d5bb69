"""The static mount over real sockets: statuses, framing, sendfile, gzip, HEAD vs GET."""

from __future__ import annotations

import gzip
import http.client
import os
import socket
from collections.abc import Callable
from email import message_from_bytes
from pathlib import Path

from reactor.app.static import StaticMount
from tests.conftest import RunningServer

VOLATILE = {"date", "x-request-id"}


def _get(server: RunningServer, path: str, headers: dict[str, str] | None = None,
         method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        conn.close()


def _byteranges(headers: dict[str, str], body: bytes) -> list[tuple[str, bytes]]:
    """A multipart/byteranges answer's parts: (Content-Range, bytes) each, in order."""
    parts = message_from_bytes(b"Content-Type: " + headers["content-type"].encode()
                               + b"\r\n\r\n" + body).get_payload()
    return [(part["Content-Range"], part.get_payload(decode=True)) for part in parts]


def test_every_status_over_the_wire(serve: Callable[..., RunningServer], www: Path) -> None:
    server = serve(StaticMount("/", www))
    status, headers, body = _get(server, "/hello.txt")
    assert (status, body) == (200, b"hello, world\n")
    etag, modified = headers["etag"], headers["last-modified"]
    assert _get(server, "/hello.txt", {"Range": "bytes=0-4"})[0::2] == (206, b"hello")
    status, headers, _ = _get(server, "/sub?x=1")
    assert (status, headers["location"]) == (301, "/sub/?x=1")
    status, headers, body = _get(server, "/hello.txt", {"If-None-Match": etag})
    assert (status, body) == (304, b"")
    assert "content-length" not in headers and "content-type" not in headers
    assert (headers["etag"], headers["last-modified"]) == (etag, modified)
    assert headers["vary"] == "Accept-Encoding"
    assert _get(server, "/hello.txt", {"If-Modified-Since": modified})[0] == 304
    assert _get(server, "/nope.txt")[0] == 404
    status, headers, _ = _get(server, "/hello.txt", method="DELETE")
    assert (status, headers["allow"]) == (405, "GET, HEAD, OPTIONS")
    assert _get(server, "/hello.txt", method="OPTIONS")[0] == 204
    assert _get(server, "/hello.txt", {"If-Match": '"x"'})[0] == 412
    status, headers, _ = _get(server, "/hello.txt", {"Range": "bytes=100-"})
    assert (status, headers["content-range"]) == (416, "bytes */13")


def test_head_headers_equal_get_headers(serve: Callable[..., RunningServer], www: Path
                                        ) -> None:
    (www / "big.txt").write_bytes(b"x" * 300_000)
    server = serve(StaticMount("/", www, cache_control="max-age=60"))
    for path, extra in (("/hello.txt", {}), ("/big.txt", {}), ("/data.bin", {}),
                        ("/style.css", {"Accept-Encoding": "gzip"}), ("/", {})):
        get_status, get_headers, get_body = _get(server, path, extra)
        head_status, head_headers, head_body = _get(server, path, extra, method="HEAD")
        assert head_status == get_status == 200
        assert head_body == b""
        for name in VOLATILE:
            get_headers.pop(name)
            head_headers.pop(name)
        assert head_headers == get_headers, path
        assert int(get_headers["content-length"]) == len(get_body)


def test_large_file_byte_exact_with_ranges(serve: Callable[..., RunningServer], www: Path
                                           ) -> None:
    """3 MiB goes out as FileBody parts (sendfile; see test_handler) and arrives intact."""
    data = os.urandom(3 * 1024 * 1024 + 17)
    (www / "large.bin").write_bytes(data)
    server = serve(StaticMount("/", www))
    status, headers, body = _get(server, "/large.bin")
    assert status == 200 and body == data
    assert int(headers["content-length"]) == len(data)
    status, headers, body = _get(server, "/large.bin", {"Range": "bytes=1000000-1999999"})
    assert (status, body) == (206, data[1_000_000:2_000_000])
    assert headers["content-range"] == f"bytes 1000000-1999999/{len(data)}"
    status, headers, body = _get(server, "/large.bin",
                                 {"Range": "bytes=0-99,2000000-2999999,-5"})
    assert status == 206
    assert _byteranges(headers, body) == [
        (f"bytes 0-99/{len(data)}", data[:100]),
        (f"bytes 2000000-2999999/{len(data)}", data[2_000_000:3_000_000]),
        (f"bytes {len(data) - 5}-{len(data) - 1}/{len(data)}", data[-5:])]
    assert int(headers["content-length"]) == len(body)


def test_multirange_framing_is_byte_exact(serve: Callable[..., RunningServer], www: Path
                                          ) -> None:
    server = serve(StaticMount("/", www))
    data = (www / "data.bin").read_bytes()
    status, headers, body = _get(server, "/data.bin", {"Range": "bytes=0-1,10-12"})
    assert status == 206
    boundary = headers["content-type"].split("boundary=")[1].encode()
    assert body == (
        b"--" + boundary + b"\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Range: bytes 0-1/1024\r\n\r\n" + data[0:2]
        + b"\r\n--" + boundary + b"\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Range: bytes 10-12/1024\r\n\r\n" + data[10:13]
        + b"\r\n--" + boundary + b"--\r\n")


def test_multirange_parts_keep_the_order_asked_for(serve: Callable[..., RunningServer],
                                                   www: Path) -> None:
    """RFC 9110 14.6: parts SHOULD come in the order of the range-specs (nginx does so); a
    client asking for a file's tail first (a ZIP's end record) got its head first. Ranges
    that overlap are merged where the first of them was asked for."""
    (www / "big.bin").write_bytes(os.urandom(200_000))  # parts read as files, not bytes
    server = serve(StaticMount("/", www))
    for name in ("data.bin", "big.bin"):
        data = (www / name).read_bytes()
        size = len(data)
        status, headers, body = _get(server, f"/{name}",
                                     {"Range": "bytes=-3,500-509,0-1,505-519"})
        assert status == 206
        assert _byteranges(headers, body) == [
            (f"bytes {size - 3}-{size - 1}/{size}", data[-3:]),
            (f"bytes 500-519/{size}", data[500:520]), (f"bytes 0-1/{size}", data[0:2])]


def test_listing_honours_preconditions(serve: Callable[..., RunningServer], www: Path
                                       ) -> None:
    """RFC 9110 13.2.1: a listing has no validators, yet its preconditions hold (nginx's
    autoindex answers them): `If-None-Match: *` matches the listing there is (304, with
    the fields its 200 would vary by), an `If-Match` tag matches nothing (412). The date
    conditions have no date to compare with and are ignored (13.1.3, 13.1.4)."""
    server = serve(StaticMount("/", www, listing=True))
    status, headers, body = _get(server, "/empty/", {"If-None-Match": "*"})
    assert (status, body) == (304, b"")
    assert (headers["vary"], headers["cache-control"]) == ("Accept, Accept-Encoding",
                                                          "no-cache")
    assert _get(server, "/empty/", {"If-None-Match": "*"}, method="HEAD")[0] == 304
    assert _get(server, "/empty/", {"If-Match": '"x"'})[0] == 412
    assert _get(server, "/empty/", {"If-Match": '"x"', "If-None-Match": "*"})[0] == 412
    for fields in ({"If-Match": "*"}, {"If-None-Match": '"x"'},
                   {"If-Modified-Since": "Thu, 01 Jan 2099 00:00:00 GMT"},
                   {"If-Unmodified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"}):
        status, headers, body = _get(server, "/empty/", fields)
        assert status == 200 and b"Index of /empty/" in body, fields
    # the index file of a directory keeps its own validators; a redirect comes first
    assert _get(server, "/", {"If-None-Match": "*"})[0] == 304
    assert _get(server, "/empty", {"If-Match": '"x"'})[0] == 301


def test_a_final_dot_segment_names_the_directory(serve: Callable[..., RunningServer],
                                                  www: Path) -> None:
    """RFC 3986 5.2.4: `/hello.txt/.` is `/hello.txt/` (a 404, as nginx answers), not the
    file (whose relative links would resolve below it); `/sub/.` is `/sub/`, answered as
    it, not redirected."""
    server = serve(StaticMount("/", www, listing=True))
    for path in ("/hello.txt/.", "/hello.txt/%2e", "/sub/page.html/.", "/hello.txt/./"):
        assert _get(server, path)[0] == 404, path
        assert _get(server, path)[0] == 404, path  # also once the file's fd is cached
    for path in ("/sub/.", "/sub/%2E", "/sub/./."):
        status, _, body = _get(server, path)
        assert status == 200 and b"Index of /sub/" in body, path
    assert _get(server, "/.")[0::2] == (200, b"<h1>home</h1>\n")
    assert _get(server, "/hello.txt")[0::2] == (200, b"hello, world\n")


def test_a_date_or_if_range_sent_twice_is_ignored(serve: Callable[..., RunningServer],
                                                  www: Path) -> None:
    """RFC 9110 13.1.3-13.1.5: If-Modified-Since with more than one member MUST be ignored;
    a second line makes two members (as would a proxy joining them), and so for the other
    dates and If-Range: the first line alone decided (a 304, a 412, a 206)."""
    server = serve(StaticMount("/", www))
    _, headers, _ = _get(server, "/data.bin")
    etag, modified = headers["etag"], headers["last-modified"]

    def status(*fields: str) -> int:
        with socket.create_connection((server.host, server.port), timeout=10) as client:
            client.sendall(("GET /data.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                            + "".join(f + "\r\n" for f in fields) + "\r\n").encode())
            data = b""
            while chunk := client.recv(65536):
                data += chunk
        return int(data.split(b" ", 2)[1])
    assert status(f"If-Modified-Since: {modified}") == 304
    assert status(f"If-Modified-Since: {modified}", f"If-Modified-Since: {modified}") == 200
    old = "Thu, 01 Jan 1970 00:00:00 GMT"
    assert status(f"If-Unmodified-Since: {old}") == 412
    assert status(f"If-Unmodified-Since: {old}", f"If-Unmodified-Since: {old}") == 200
    assert status("Range: bytes=0-1", f"If-Range: {etag}") == 206
    assert status("Range: bytes=0-1", f"If-Range: {etag}", 'If-Range: "other"') == 200

def test_gzip_cache_invalidated_by_file_change(serve: Callable[..., RunningServer],
                                               www: Path) -> None:
    server = serve(StaticMount("/", www))
    path = www / "style.css"
    gz = {"Accept-Encoding": "gzip"}
    _, headers, body = _get(server, "/style.css", gz)
    assert headers["content-encoding"] == "gzip"
    assert gzip.decompress(body) == path.read_bytes()
    first_etag = headers["etag"]
    assert _get(server, "/style.css", {**gz, "If-None-Match": first_etag})[0] == 304
    path.write_bytes(b"p { margin: 0; }\n" * 300)
    os.utime(path, (2_000_000_000, 2_000_000_000))
    _, headers, body = _get(server, "/style.css", gz)
    assert gzip.decompress(body) == b"p { margin: 0; }\n" * 300
    assert headers["etag"] != first_etag and headers["etag"].endswith('-gz"')
    assert _get(server, "/style.css", {**gz, "If-None-Match": first_etag})[0] == 200


def test_sidecar_served(serve: Callable[..., RunningServer], www: Path) -> None:
    (www / "app.js.gz").write_bytes(gzip.compress(b"precompressed();\n"))
    server = serve(StaticMount("/", www))
    _, headers, body = _get(server, "/app.js", {"Accept-Encoding": "gzip"})
    assert headers["content-encoding"] == "gzip"
    assert headers["content-type"] == "application/javascript; charset=utf-8"
    assert gzip.decompress(body) == b"precompressed();\n"
    _, headers, body = _get(server, "/app.js")
    assert "content-encoding" not in headers and body == (www / "app.js").read_bytes()


def test_keep_alive_sequence(serve: Callable[..., RunningServer], www: Path) -> None:
    """HEAD of a large file, a 304 and ranged answers leave the connection in sync."""
    (www / "big.bin").write_bytes(b"b" * 200_000)
    server = serve(StaticMount("/", www))
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        conn.request("HEAD", "/big.bin")
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b"")
        etag = response.getheader("ETag")
        conn.request("GET", "/big.bin", headers={"If-None-Match": etag})
        response = conn.getresponse()
        assert (response.status, response.read()) == (304, b"")
        conn.request("GET", "/big.bin", headers={"Range": "bytes=0-0,-1"})
        response = conn.getresponse()
        assert response.status == 206 and response.read().count(b"Content-Range") == 2
        conn.request("GET", "/hello.txt")
        assert conn.getresponse().read() == b"hello, world\n"
    finally:
        conn.close()


def test_a_many_range_request_holds_one_descriptor(serve: Callable[..., RunningServer],
                                                   www: Path) -> None:
    """Range amplification of file descriptors: 16 ranges of a large file, from clients
    that do not read, held one fd per range (nginx holds one per answer)."""
    from tests.conftest import wait_until
    big = www / "big.bin"
    with open(big, "wb") as file:
        file.truncate(40 * 1024 * 1024)  # 16 ranges of 2 MiB: more than the socket takes
    running = serve(StaticMount("/", www))
    ranges = "bytes=" + ",".join(f"{i * 2_500_000}-{i * 2_500_000 + 2_000_000}"
                                 for i in range(16))
    clients = []

    def held() -> int:
        count = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                count += os.readlink(f"/proc/self/fd/{fd}") == str(big)
            except OSError:
                pass
        return count
    try:
        for _ in range(5):
            client = socket.create_connection((running.host, running.port))
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            client.sendall(f"GET /big.bin HTTP/1.1\r\nHost: x\r\nRange: {ranges}\r\n\r\n"
                           .encode())
            clients.append(client)
        wait_until(lambda: held() > 40, timeout=1.0)  # what the old code reached: 5 x 16
        assert held() <= 5 + 1  # one per answer, and the open-file cache's entry
    finally:
        for client in clients:
            client.close()


def test_a_method_the_mount_refuses_is_answered_before_100_continue(
        serve: Callable[..., RunningServer], www: Path) -> None:
    """RFC 9110 10.1.1: the final status known at head time goes out instead of 100
    Continue (the whole body was uploaded for a 405), as for the router's own answers."""
    from tests.conftest import RawClient, request_bytes
    running = serve(StaticMount("/s", www))
    for method in ("POST", "PUT", "PATCH"):
        with RawClient.to(running) as client:
            head = request_bytes(method, "/s/hello.txt", {"Expect": "100-continue",
                                                          "Content-Length": "2000000"})
            client.send(head)
            response = client.read_response()  # no body was sent: a 100 would wait here
            assert response.status == 405, (method, response)
            assert "GET" in (response.header("allow") or "")
            assert client.is_closed_by_peer()  # the body stays unread


def test_an_override_with_a_charset_goes_out_as_given(serve: Callable[..., RunningServer],
                                                      www: Path) -> None:
    (www / "old.html").write_bytes("<p>caf\u00e9</p>".encode("latin-1"))
    server = serve(StaticMount("/", www, mime_overrides={
        ".html": "text/html; charset=iso-8859-1"}))
    status, headers, body = _get(server, "/old.html", {"Accept-Encoding": "gzip"})
    assert (status, headers["content-type"]) == (200, "text/html; charset=iso-8859-1")
    assert gzip.decompress(body) == b"<p>caf\xe9</p>"  # still a compressible type
