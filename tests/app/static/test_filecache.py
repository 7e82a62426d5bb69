"""The open-file cache: a file served once is answered without the pool, from its open fd,
until it changes (grown, rewritten, deleted, replaced) or its entry is older than valid_s."""

from __future__ import annotations

import gzip
import os
import time
from collections.abc import Callable
from pathlib import Path

from reactor.app.application import App, CompressionPolicy, build_app
from reactor.app.static import StaticHandler, StaticMount
from reactor.app.static.filecache import KEEP_BYTES_MAX, OpenFileCache
from reactor.app.static.files import FileServer
from reactor.app.types import FileBody, Offload, Response

from .conftest import body_bytes, call, header, make_request


def first_answer(app: App, path: str, headers: dict[str, str] | None = None
                 ) -> Response | Offload:
    """What the app answers on the loop (an Offload means a pool round trip)."""
    return app.open(make_request("GET", path, headers)).respond()


def files_of(app: App) -> FileServer:
    route = app.router.find_mount("/x", "GET")
    assert route is not None
    handler = route[0].handler
    assert isinstance(handler, StaticHandler)
    return handler.files


def test_a_file_served_once_is_answered_on_the_loop_with_the_same_response(
        static_app: Callable[..., App], www: Path) -> None:
    (www / "big.bin").write_bytes(b"b" * (KEEP_BYTES_MAX + 1))
    app = static_app()
    for path, size in (("/data.bin", 1024), ("/big.bin", KEEP_BYTES_MAX + 1)):
        pooled = call(app, "GET", path)
        again = first_answer(app, path)
        assert isinstance(again, Response)  # no pool trip
        if size <= KEEP_BYTES_MAX:
            assert type(again.body) is bytes  # kept with the entry: no fd, no sendfile
        else:
            assert isinstance(again.body, FileBody)  # sendfile of the whole file
            assert again.body.offset == 0 and again.body.length == size
        assert again.status == pooled.status and again.headers == pooled.headers
        assert body_bytes(again) == body_bytes(pooled)
        head = app.open(make_request("HEAD", path)).respond()
        assert isinstance(head, Response) and head.headers == pooled.headers
        assert body_bytes(head) == body_bytes(pooled)  # the length the framing announces
    assert files_of(app).open_files.hits == 4


def test_conditional_requests_are_answered_from_the_cache_too(
        static_app: Callable[..., App]) -> None:
    app = static_app()
    etag = header(call(app, "GET", "/data.bin"), "ETag")
    assert etag is not None
    answer = first_answer(app, "/data.bin", {"If-None-Match": etag.decode()})
    assert isinstance(answer, Response) and answer.status == 304


def test_repeat_answers_reuse_the_first_answers_fields_and_honour_preconditions(
        static_app: Callable[..., App]) -> None:
    app = static_app(cache_control="max-age=60")
    for path in ("/data.bin", "/style.css"):  # binary; compressible, asked without gzip
        pooled = call(app, "GET", path)
        first = first_answer(app, path)  # the entry remembers the pool's answer...
        again = first_answer(app, path)  # ...and every loop answer is made from it
        for answer in (first, again):
            assert isinstance(answer, Response) and type(answer.body) is bytes
            assert answer.status == 200 and answer.headers == pooled.headers
            assert body_bytes(answer) == body_bytes(pooled)
        assert isinstance(first, Response) and isinstance(again, Response)
        assert again.headers is not first.headers  # each answer owns its list
        entries = files_of(app).open_files._entries
        assert entries and all(entry.plain is not None for entry in entries.values())
        etag = (header(pooled, "ETag") or b"").decode()
        modified = (header(pooled, "Last-Modified") or b"").decode()
        validators = [field for field in pooled.headers
                      if field[0] not in (b"Content-Type", b"Accept-Ranges")]
        long_ago = "Sat, 01 Jan 2000 00:00:00 GMT"
        for fields, status in (({"If-None-Match": etag}, 304),
                               ({"If-None-Match": etag, "If-Modified-Since": long_ago}, 304),
                               ({"If-None-Match": '"other"', "If-Modified-Since": modified},
                                200),  # If-Modified-Since counts only without If-None-Match
                               ({"If-None-Match": f'"other", {etag}'}, 304),
                               ({"If-None-Match": f"W/{etag}"}, 304),  # compared weakly
                               ({"If-Modified-Since": modified}, 304),
                               ({"If-Modified-Since": long_ago}, 200),
                               ({"If-None-Match": etag, "If-Match": '"another"'}, 412),
                               ({"If-Match": '"another"'}, 412)):
            answer = first_answer(app, path, fields)
            assert isinstance(answer, Response) and answer.status == status, fields
            if status == 304:
                assert answer.headers == validators and answer.body == b""
        assert files_of(app).open_files.hits == (11 if path == "/data.bin" else 22)  # no pool


def test_range_requests_take_the_pool_path_and_gzip_ones_once(
        static_app: Callable[..., App]) -> None:
    app = static_app()
    call(app, "GET", "/data.bin")
    call(app, "GET", "/style.css")
    assert isinstance(first_answer(app, "/data.bin", {"Range": "bytes=0-9"}), Offload)
    identity = first_answer(app, "/style.css")  # compressible, but gzip not accepted
    assert isinstance(identity, Response) and header(identity, "Vary") == b"Accept-Encoding"
    gz = {"Accept-Encoding": "gzip"}
    assert isinstance(first_answer(app, "/style.css", gz), Offload)  # no gzip variant yet
    pooled = call(app, "GET", "/style.css", gz)
    again = first_answer(app, "/style.css", gz)  # now kept with the entry
    assert isinstance(again, Response) and again.headers == pooled.headers
    assert header(again, "Content-Encoding") == b"gzip" and again.body is pooled.body
    assert isinstance(first_answer(app, "/style.css", {**gz, "Range": "bytes=0-9"}), Offload)
    identity = first_answer(app, "/style.css", {"Accept-Encoding": "gzip;q=0, br"})
    assert isinstance(identity, Response) and header(identity, "Content-Encoding") is None
    assert body_bytes(identity) == body_bytes(call(app, "GET", "/style.css"))


def test_a_gzip_revalidation_first_is_answered_on_the_loop_then_its_200_once_pooled(
        static_app: Callable[..., App]) -> None:
    app = static_app()
    gz = {"Accept-Encoding": "gzip"}
    etag = (header(call(app, "GET", "/style.css", gz), "ETag") or b"").decode()
    cache = files_of(app).open_files
    cache.close()  # a fresh entry, made by a 304 of the pool path
    assert call(app, "GET", "/style.css", {**gz, "If-None-Match": etag}).status == 304
    answer = first_answer(app, "/style.css", {**gz, "If-None-Match": etag})
    assert isinstance(answer, Response) and answer.status == 304
    assert isinstance(first_answer(app, "/style.css", gz), Offload)  # no body made yet
    pooled = call(app, "GET", "/style.css", gz)
    again = first_answer(app, "/style.css", gz)
    assert isinstance(again, Response) and again.body is pooled.body


def test_gzip_off_or_a_sidecar_is_what_the_loop_answers_too(
        static_app: Callable[..., App], www: Path) -> None:
    gz = {"Accept-Encoding": "gzip"}
    off = build_app(directory=None, mounts=[StaticMount("/", www)],
                    compression=CompressionPolicy(enabled=False))
    pooled = call(off, "GET", "/style.css", gz)
    assert header(pooled, "Content-Encoding") is None
    again = first_answer(off, "/style.css", gz)  # identity to gzip clients as well
    assert isinstance(again, Response) and again.headers == pooled.headers
    source = (www / "app.js").read_bytes()
    sidecar = www / "app.js.gz"
    sidecar.write_bytes(gzip.compress(source, mtime=0))
    app = static_app()
    pooled = call(app, "GET", "/app.js", gz)
    assert header(pooled, "Content-Encoding") == b"gzip"
    again = first_answer(app, "/app.js", gz)  # the sidecar's bytes, kept
    assert isinstance(again, Response) and again.headers == pooled.headers
    assert again.body == pooled.body == sidecar.read_bytes()
    assert isinstance(first_answer(app, "/app.js"), Offload)  # identity not answered yet
    call(app, "GET", "/app.js")
    assert isinstance(first_answer(app, "/app.js"), Response)
    # the sidecar is checked by its own stat: rewritten, then removed, it is seen at once
    sidecar.write_bytes(gzip.compress(source, compresslevel=1, mtime=0))
    assert isinstance(first_answer(app, "/app.js", gz), Offload)
    fresh = call(app, "GET", "/app.js", gz)
    assert fresh.body == sidecar.read_bytes() and header(fresh, "ETag") != header(pooled, "ETag")
    again = first_answer(app, "/app.js", gz)
    assert isinstance(again, Response) and again.headers == fresh.headers
    assert again.body == fresh.body
    etag = (header(fresh, "ETag") or b"").decode()
    answer = first_answer(app, "/app.js", {**gz, "If-None-Match": etag})
    assert isinstance(answer, Response) and answer.status == 304
    sidecar.unlink()
    assert isinstance(first_answer(app, "/app.js", {**gz, "If-None-Match": etag}), Offload)
    compressed = call(app, "GET", "/app.js", gz)
    identity_etag = header(call(app, "GET", "/app.js"), "ETag") or b""
    assert header(compressed, "ETag") == identity_etag[:-1] + b'-gz"'
    again = first_answer(app, "/app.js", gz)
    assert isinstance(again, Response) and again.headers == compressed.headers
    assert gzip.decompress(again.body) == source  # type: ignore[arg-type]


def test_only_canonical_paths_take_entries(static_app: Callable[..., App]) -> None:
    app = static_app()
    for path in ("//hello.txt", "/./hello.txt", "///hello.txt"):
        answer = call(app, "GET", path)
        assert answer.status == 200 and body_bytes(answer) == b"hello, world\n", path
    assert len(files_of(app).open_files) == 0
    call(app, "GET", "/hello.txt")
    assert len(files_of(app).open_files) == 1
    assert isinstance(first_answer(app, "//hello.txt"), Offload)
    assert isinstance(first_answer(app, "/hello.txt"), Response)


def test_a_grown_file_is_served_anew(static_app: Callable[..., App], www: Path) -> None:
    app = static_app()
    call(app, "GET", "/hello.txt")
    with open(www / "hello.txt", "ab") as file:
        file.write(b"more\n")
    answer = first_answer(app, "/hello.txt")
    assert isinstance(answer, Offload)  # the entry no longer describes the file
    assert body_bytes(call(app, "GET", "/hello.txt")) == b"hello, world\nmore\n"
    cached = first_answer(app, "/hello.txt")
    assert isinstance(cached, Response) and body_bytes(cached) == b"hello, world\nmore\n"


def test_a_file_rewritten_in_place_with_the_same_size_is_served_anew(
        static_app: Callable[..., App], www: Path) -> None:
    app = static_app()
    call(app, "GET", "/hello.txt")
    (www / "hello.txt").write_bytes(b"HELLO, WORLD\n")  # same size, new mtime
    assert isinstance(first_answer(app, "/hello.txt"), Offload)
    assert body_bytes(call(app, "GET", "/hello.txt")) == b"HELLO, WORLD\n"


def test_a_deleted_file_is_404_and_its_fd_is_closed(static_app: Callable[..., App],
                                                    www: Path) -> None:
    app = static_app()
    call(app, "GET", "/hello.txt")
    cache = files_of(app).open_files
    assert len(cache) == 1
    os.unlink(www / "hello.txt")
    assert call(app, "GET", "/hello.txt").status == 404
    assert len(cache) == 0


def test_a_file_replaced_by_a_rename_is_served_anew(static_app: Callable[..., App],
                                                     www: Path) -> None:
    app = static_app()
    call(app, "GET", "/hello.txt")
    (www / "new.tmp").write_bytes(b"replaced\n")
    os.utime(www / "new.tmp", (1_600_000_000, 1_600_000_000))  # even with the old mtime
    os.replace(www / "new.tmp", www / "hello.txt")
    assert isinstance(first_answer(app, "/hello.txt"), Offload)
    assert body_bytes(call(app, "GET", "/hello.txt")) == b"replaced\n"


def test_entries_expire_after_valid_s_and_the_cache_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    fd = os.open(path, os.O_RDONLY)
    try:
        cache = OpenFileCache(valid_s=0.05, max_entries=2)
        for name in (b"/a", b"/b", b"/c"):
            cache.put(name, fd, os.fstat(fd))
        assert len(cache) == 2  # full: the third is not added
        found = cache.lookup(b"/a")
        assert found is not None and found.data == b"x"
        time.sleep(0.1)  # past valid_s: the entry is dropped, its fd closed
        assert cache.lookup(b"/a") is None and len(cache) == 1
        cache.sweep()
        assert len(cache) == 0 and cache.kept == 0
        cache.close()
    finally:
        os.close(fd)


def test_kept_bytes_stay_within_the_budget(tmp_path: Path) -> None:
    fds = []
    try:
        cache = OpenFileCache(keep_bytes=10_000)
        for name, size in (("a", 6000), ("b", 6000), ("c", 4000), ("d", KEEP_BYTES_MAX + 1)):
            (tmp_path / name).write_bytes(b"x" * size)
            fds.append(os.open(tmp_path / name, os.O_RDONLY))
            entry = cache.put(f"/{name}".encode(), fds[-1], os.fstat(fds[-1]))
            assert entry is not None
        kept = {key: entry.data is not None for key, entry in cache._entries.items()}
        assert kept == {b"/a": True, b"/b": False, b"/c": True, b"/d": False}
        assert cache.kept == 10_000
        cache.sweep()
        assert cache.kept == 10_000  # recounted
        cache.close()
    finally:
        for fd in fds:
            os.close(fd)


def test_an_idle_server_releases_a_deleted_files_space(serve, www: Path) -> None:
    """The server's timer sweeps the caches: the fd of a file served once, then deleted,
    is closed within about valid_s even if no request follows (only lookups did it)."""
    from tests.conftest import fetch, wait_until

    big = www / "big.bin"
    big.write_bytes(b"x" * 200_000)
    running = serve(StaticMount("/", www))
    assert fetch(running, "GET", "/big.bin")[0] == 200

    def pinned() -> bool:
        for fd in os.listdir("/proc/self/fd"):
            try:
                if os.readlink(f"/proc/self/fd/{fd}") == f"{big} (deleted)":
                    return True
            except OSError:
                continue
        return False

    os.unlink(big)
    assert pinned()  # held by the cache entry right after the delete
    assert wait_until(lambda: not pinned(), 5.0)


def test_a_future_modification_date_is_sent_as_now(static_app: Callable[..., App],
                                                   www: Path) -> None:
    """RFC 9110 8.8.2.1: Last-Modified is never later than the response's Date."""
    future = time.time() + 10 * 365 * 86400
    os.utime(www / "hello.txt", (future, future))
    from reactor.app.static.conditional import parse_http_date
    answer = call(static_app(), "GET", "/hello.txt")
    last_modified = header(answer, "Last-Modified")
    assert last_modified is not None
    assert parse_http_date(last_modified) <= time.time() + 1  # type: ignore[operator]
    body_bytes(answer)


def test_a_gzip_body_is_kept_whatever_its_size_the_identity_bytes_up_to_the_limit(
        static_app: Callable[..., App], www: Path) -> None:
    import random
    text = random.Random(7).randbytes(3 * KEEP_BYTES_MAX).hex().encode()  # gzip: about half
    (www / "bundle.js").write_bytes(text)
    app = static_app()
    gz = {"Accept-Encoding": "gzip"}
    pooled = call(app, "GET", "/bundle.js", gz)
    assert type(pooled.body) is bytes and len(pooled.body) > KEEP_BYTES_MAX
    again = first_answer(app, "/bundle.js", gz)
    assert isinstance(again, Response) and again.body is pooled.body
    assert gzip.decompress(again.body) == text
    call(app, "GET", "/bundle.js")
    identity = first_answer(app, "/bundle.js")
    assert isinstance(identity, Response) and isinstance(identity.body, FileBody)
    assert body_bytes(identity) == text


def test_a_file_dated_in_the_future_is_answered_on_the_loop_until_its_second_ends(
        static_app: Callable[..., App], www: Path) -> None:
    """Its Last-Modified is the response's second (RFC 9110 8.8.2.1): the kept answer holds
    for that second only, then the pool path makes it anew."""
    from reactor.app.static.conditional import parse_http_date

    future = time.time() + 86400
    os.utime(www / "hello.txt", (future, future))
    app = static_app()
    for _ in range(5):  # a second may end between the two answers: then try again
        pooled = call(app, "GET", "/hello.txt")
        answer = first_answer(app, "/hello.txt")
        modified = parse_http_date(header(pooled, "Last-Modified") or b"")
        assert modified is not None
        if isinstance(answer, Response):
            assert answer.headers == pooled.headers and answer.body == pooled.body
            break
        assert time.time() >= modified + 1  # to the pool only once that second is over
    else:
        raise AssertionError("never answered on the loop")
    entry = files_of(app).open_files._entries[b"/hello.txt"]
    assert entry.plain is not None and entry.plain.until == modified + 1



def test_answers_match_their_etag_while_the_file_is_replaced(serve, www: Path) -> None:
    """Never a mix of an old head and a new body: over a real server, while another thread
    renames new versions over a file, every 200 (identity or gzip, from the loop or the
    pool) carries the bytes of the version its ETag names."""
    import http.client
    import threading

    from reactor.app.static.conditional import make_etag

    running = serve(StaticMount("/", www))
    versions: dict[str, bytes] = {}
    stop = threading.Event()

    def replace() -> None:
        number = 0
        while not stop.is_set():
            number += 1
            data = b"/* version %d */\n" % number * (1 + number % 7)
            temp = www / "swap.tmp"
            temp.write_bytes(data)
            versions[make_etag(os.stat(temp)).decode()] = data
            os.replace(temp, www / "app.css")
            time.sleep(0.002)

    (www / "app.css").write_bytes(b"/* version 0 */\n")
    versions[make_etag(os.stat(www / "app.css")).decode()] = b"/* version 0 */\n"
    writer = threading.Thread(target=replace)
    writer.start()
    connection = http.client.HTTPConnection(running.host, running.port, timeout=5)
    seen = set()
    try:
        for number in range(400):
            encoding = "gzip" if number % 2 else "identity"
            connection.request("GET", "/app.css", headers={"Accept-Encoding": encoding})
            response = connection.getresponse()
            body = response.read()
            assert response.status == 200
            etag = response.getheader("ETag") or ""
            if response.getheader("Content-Encoding") == "gzip":
                etag = etag[:-4] + '"'  # the identity tag of the same version
                body = gzip.decompress(body)
            assert versions[etag] == body, etag
            seen.add(etag)
    finally:
        stop.set()
        writer.join()
        connection.close()
    assert len(seen) > 10 and files_of_server(running).open_files.hits > 0


def files_of_server(running) -> FileServer:  # type: ignore[no-untyped-def]
    return files_of(running.server.http.app)


def test_static_open_file_cache_bytes_bounds_every_mounts_kept_bytes(www: Path) -> None:
    """`[static] open_file_cache_bytes`: 0 keeps no file bytes (small files leave by
    sendfile from the cached fd, as larger ones do), for the root and every other mount."""
    from reactor.ops.assembly import make_app
    from reactor.ops.settings import Config, StaticConfig

    config = Config(static=StaticConfig(root=www, open_file_cache_bytes=0, mounts=(
        {"prefix": "/more", "root": str(www / "sub")},)))
    app = make_app(config)
    assert isinstance(app, App)
    caches = [route.handler.files.open_files for route, _rest in
              (app.router.find_mount("/x", "GET"), app.router.find_mount("/more/x", "GET"))
              if isinstance(route.handler, StaticHandler)]  # type: ignore[misc]
    assert [cache.keep_bytes for cache in caches] == [0, 0]
    pooled = call(app, "GET", "/hello.txt")
    again = first_answer(app, "/hello.txt")
    assert isinstance(again, Response) and isinstance(again.body, FileBody)
    assert body_bytes(again) == body_bytes(pooled) == b"hello, world\n"
    default = make_app(Config(static=StaticConfig(root=www)))
    assert files_of(default).open_files.keep_bytes == 4 * 1024 * 1024  # type: ignore[arg-type]


def test_a_put_or_delete_of_a_hard_linked_file_is_seen_by_the_next_get(
        serve, www: Path, tmp_path: Path) -> None:
    """A file with another name elsewhere (a hard link: a deploy's backup, a build tree)
    keeps its inode linked when the server's PUT renames a new file over it or its DELETE
    unlinks it: the client that just wrote it gets its own write (and a renamed-away file
    a 404), not the cached old bytes for the rest of the entry's second."""
    from tests.conftest import fetch

    running = serve(StaticMount("/", www, uploads=True))
    for name in ("put.css", "del.css", "moved.css"):
        (www / name).write_bytes(b"old " + name.encode() + b"\n")
        os.link(www / name, tmp_path / name)  # a second name outside the root
        for _ in range(2):  # the second answer comes from the cache entry
            assert fetch(running, "GET", "/" + name)[2] == b"old " + name.encode() + b"\n"
    hits = files_of_server(running).open_files.hits
    assert hits >= 3
    assert fetch(running, "PUT", "/put.css", b"new put.css\n")[0] == 204
    assert fetch(running, "GET", "/put.css")[2] == b"new put.css\n"
    assert fetch(running, "DELETE", "/del.css")[0] == 204
    assert fetch(running, "GET", "/del.css")[0] == 404
    os.rename(www / "moved.css", www / "elsewhere.css")
    assert fetch(running, "GET", "/moved.css")[0] == 404
    assert files_of_server(running).open_files.hits == hits
