"""CPU and Python calls per answer of a small cached static file, through the loop and a socket.

`python -m bench.staticpath [--file app.css|app.js|favicon.ico] [--gzip] [--sidecar]
[--revalidate] [--head] [--requests N] [--calls] [--log off|FILE]` makes a document root
with a 4 KiB `app.css`, a 16 KiB `app.js` and a 1 KiB `favicon.ico`, serves it as
`reactor serve` does (`[static] root`, the built-in routes and the `--lb` wrappers) on the
real event loop and socket transport, and drives one keep-alive loopback connection from
the same thread as `bench.hotpath --socket` does: send a request, run loop passes until the
whole answer is back. `--gzip` asks with `Accept-Encoding: gzip, deflate, br` (as browsers
do: the compressible `.css` and `.js` are then answered gzip), `--revalidate` with the ETag
the first answer carried (`If-None-Match`: a 304, as browsers revalidate assets), `--head`
with HEAD; `--sidecar` puts precompressed `NAME.gz` files beside the assets (nginx's
`gzip_static`), which gzip answers are then made of. Prints the best CPU µs per answer over
15 rounds; `--calls` prints instead the Python function calls per answer (cProfile over
`--requests` answers, builtins included), the measure of how much interpreted work one
answer takes.

Served files stay in the open-file cache (and the gzip cache) between answers, as hot
assets do on a busy site; the entry's 1 s validity is renewed by the pool path when it
lapses, which the best-of-15 rounds mostly leave out.
"""

from __future__ import annotations

import argparse
import cProfile
import gzip as gzip_module
import os
import pstats
import tempfile
from collections.abc import Callable

from bench.hotpath import _best_per_call, _loopback_pair
from reactor.app.application import build_app
from reactor.app.health import SERVING, Readiness
from reactor.app.static import StaticMount
from reactor.conn.server import HttpServer
from reactor.loop import EventLoop
from reactor.ops.assembly import wrap_app
from reactor.ops.logging import ServerLog
from reactor.ops.settings import Config

FILES = {"app.css": 4 * 1024, "app.js": 16 * 1024, "favicon.ico": 1024}
BROWSER_ACCEPT_ENCODING = b"gzip, deflate, br"


def make_root(directory: str, *, sidecars: bool = False) -> None:
    """The three assets, text-like (so gzip has something to do) and of the stated sizes,
    with `NAME.gz` beside each if `sidecars`."""
    for name, size in FILES.items():
        line = b"/* %s: a line of a small static asset, repeated */\n" % name.encode()
        data = (line * (size // len(line) + 1))[:size]
        with open(os.path.join(directory, name), "wb") as out:
            out.write(data)
        if sidecars:
            with open(os.path.join(directory, name + ".gz"), "wb") as out:
                out.write(gzip_module.compress(data, mtime=0))


def request_bytes(path: str, *, method: str = "GET", gzip: bool = False,
                  etag: bytes | None = None) -> bytes:
    lines = [b"%s %s HTTP/1.1" % (method.encode(), path.encode()),
             b"Host: localhost:8080", b"User-Agent: bench"]
    if gzip:
        lines.append(b"Accept-Encoding: " + BROWSER_ACCEPT_ENCODING)
    if etag is not None:
        lines.append(b"If-None-Match: " + etag)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _header(answer: bytes, name: bytes) -> bytes | None:
    head = answer.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


def run(path: str, *, gzip: bool, revalidate: bool, head: bool, requests: int, calls: bool,
        log_target: str, sidecars: bool = False, rounds: int = 15) -> tuple[float, bytes]:
    """(best CPU seconds per answer, or calls per answer with `calls`; the answer's head)."""
    loop = EventLoop(pool_threads=1)
    log = ServerLog(access=log_target, error="stderr")
    with tempfile.TemporaryDirectory(prefix="staticpath-") as root:
        make_root(root, sidecars=sidecars)
        app = wrap_app(build_app(directory=None, mounts=[StaticMount("/", root)]), Config(),
                       Readiness(SERVING))
        server = HttpServer(loop, app, log)
        accepted, client, addr = _loopback_pair()
        server.accept(accepted, addr)
        client.setblocking(False)
        run_once = loop._run_once
        try:
            def exchange(request: bytes, expected: int) -> bytes:
                client.sendall(request)
                got = b""
                while True:
                    run_once()
                    try:
                        got += client.recv(262144)
                    except BlockingIOError:
                        continue
                    if len(got) >= expected:
                        return got

            method = "HEAD" if head else "GET"
            first = exchange(request_bytes(path, method=method, gzip=gzip), 1)
            while b"\r\n\r\n" not in first:
                first += exchange(b"", 1)
            length = int(_header(first, b"content-length") or b"0")
            whole = first.index(b"\r\n\r\n") + 4 + (0 if head else length)
            while len(first) < whole:
                first += exchange(b"", whole - len(first))
            etag = _header(first, b"etag")
            request = request_bytes(path, method=method, gzip=gzip,
                                    etag=etag if revalidate else None)
            answer = exchange(request, 1)
            while b"\r\n\r\n" not in answer:
                answer += exchange(b"", 1)
            head_end = answer.index(b"\r\n\r\n") + 4
            size = head_end + int(_header(answer, b"content-length") or b"0") * (
                not head and not answer.startswith(b"HTTP/1.1 304"))
            while len(answer) < size:
                answer += exchange(b"", size - len(answer))

            def one(i: int) -> None:
                exchange(request, size)
                if i % 64 == 0:
                    log.flush()

            if calls:
                return _calls_per_answer(one, requests), answer[:head_end]
            return _best_per_call(one, requests, rounds), answer[:head_end]
        finally:
            client.close()
            for transport in list(server.connections):
                transport.abort()
            log.close()
            loop.close()


def _calls_per_answer(call: Callable[[int], None], requests: int) -> float:
    for i in range(2000):
        call(i)
    profile = cProfile.Profile()
    profile.enable()
    for i in range(requests):
        call(i)
    profile.disable()
    stats = pstats.Stats(profile)
    return stats.total_calls / requests  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.staticpath")
    parser.add_argument("--file", default="app.css", choices=sorted(FILES))
    parser.add_argument("--gzip", action="store_true", help="Accept-Encoding as browsers send")
    parser.add_argument("--sidecar", action="store_true", help="precompressed NAME.gz beside")
    parser.add_argument("--revalidate", action="store_true",
                        help="If-None-Match with the file's ETag (a 304)")
    parser.add_argument("--head", action="store_true", help="HEAD instead of GET")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--calls", action="store_true",
                        help="Python calls per answer (cProfile) instead of CPU time")
    parser.add_argument("--log", default="/dev/null", help='access log target ("off" = none)')
    parser.add_argument("--show", action="store_true", help="print the answer's head too")
    args = parser.parse_args(argv)
    figure, head = run("/" + args.file, gzip=args.gzip, revalidate=args.revalidate,
                       head=args.head, requests=args.requests, calls=args.calls,
                       log_target=args.log, sidecars=args.sidecar)
    status = head.split(b" ", 2)[1].decode()
    what = ", ".join(name for name, on in (("gzip", args.gzip), ("sidecar", args.sidecar),
                                           ("If-None-Match", args.revalidate),
                                           ("HEAD", args.head)) if on) or "plain GET"
    if args.calls:
        print(f"{figure:.1f} Python calls per {status} answer of /{args.file} ({what})")
    else:
        print(f"{figure * 1e6:.1f} µs CPU per {status} answer of /{args.file} ({what};"
              f" loop + socket, both ends)")
    if args.show:
        print(head.decode("latin-1"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
