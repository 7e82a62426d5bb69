"""Large compressible files: gzipped while sent (chunked), flat memory, same validators."""

from __future__ import annotations

import gzip
from pathlib import Path

from reactor.app.static import StaticMount
from reactor.app.static.gzcache import GzipCache
from tests.conftest import RawClient, request_bytes


def read_chunked(client: RawClient) -> bytes:
    body = b""
    while True:
        size = int(client.read_until(b"\r\n")[:-2], 16)
        if size == 0:
            client.read_until(b"\r\n")
            return body
        body += client.read_exactly(size)
        client.read_exactly(2)


def test_a_file_over_the_cache_cap_streams_gzip_with_chunked_framing(serve, tmp_path: Path):
    root = tmp_path / "site"
    root.mkdir()
    text = b"".join(b"line %d of a large log-like text file\n" % i for i in range(200_000))
    (root / "big.txt").write_bytes(text)  # ~7.6 MiB, over the 1 MiB per-file cache cap
    running = serve(StaticMount("/", root), gzip_cache=GzipCache(file_max_bytes=1 << 20))
    gz = {"Accept-Encoding": "gzip"}
    with RawClient.to(running) as client:
        client.send(request_bytes("GET", "/big.txt", gz))
        head = client.read_response(head=True)
        assert head.status == 200
        assert head.header("content-encoding") == "gzip"
        assert head.header("transfer-encoding") == "chunked"
        assert head.header("etag").endswith('-gz"')
        assert gzip.decompress(read_chunked(client)) == text
        # HEAD: the same head, no body produced
        client.send(request_bytes("HEAD", "/big.txt", gz))
        head_only = client.read_response(head=True)
        assert head_only.header("transfer-encoding") == "chunked"
        assert head_only.header("etag") == head.header("etag")
        # and the validators work against the streamed representation
        client.send(request_bytes("GET", "/big.txt",
                                  {**gz, "If-None-Match": head.header("etag")}))
        assert client.read_response(head=True).status == 304
