"""Thread-per-connection HTTP/1.1 server on raw sockets: the design reactor grew out of.

An accept loop hands every connection to a new thread. The thread reads until it
finds the end of the head with ``find(b"\\r\\n\\r\\n")``, skips a ``Content-Length``
body, answers, and loops while the connection is keep-alive (pipelined requests
already in the buffer are answered in order). Access log: one JSON line per request.

Standard library only; run with any Python 3.11:
``python threaded.py --host 127.0.0.1 --port 8080 --directory www --log access.log``
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import TextIO

from common import (
    ECHO_PREFIX,
    FILES_PREFIX,
    TEXT_TYPE,
    content_type,
    gzip_bytes,
    parse_args,
    resolve_file,
    wants_gzip,
)

MAX_HEAD = 64 * 1024
RECV_SIZE = 64 * 1024
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


class Request:
    """The parts of a parsed request head this server needs."""

    def __init__(self, method: str, target: str, version: str, headers: dict[str, str]):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection


def parse_head(head: bytes) -> Request:
    """Parse a request line and headers; raises ValueError when malformed."""
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError("bad header line")
        headers[name.strip().lower()] = value.strip()
    return Request(method, target, version, headers)


def response_head(status: int, ctype: str, length: int, keep: bool, extra: str = "") -> bytes:
    connection = "keep-alive" if keep else "close"
    return (
        f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: {ctype}\r\n"
        f"Content-Length: {length}\r\nConnection: {connection}\r\n{extra}\r\n"
    ).encode("latin-1")


class Server:
    """Accept loop plus per-connection threads."""

    def __init__(self, directory: Path, log: TextIO | None):
        self.directory = directory
        self.log = log
        self.log_lock = threading.Lock()

    def serve_forever(self, listener: socket.socket) -> None:
        while True:
            conn, addr = listener.accept()
            threading.Thread(target=self.handle, args=(conn, addr), daemon=True).start()

    def handle(self, conn: socket.socket, addr: tuple[str, int]) -> None:
        buf = b""
        try:
            while True:
                end = buf.find(b"\r\n\r\n")
                while end < 0:
                    if len(buf) > MAX_HEAD:
                        return
                    chunk = conn.recv(RECV_SIZE)
                    if not chunk:
                        return
                    buf += chunk
                    end = buf.find(b"\r\n\r\n")
                request = parse_head(buf[:end])
                buf = buf[end + 4 :]
                length = int(request.headers.get("content-length", "0"))
                while len(buf) < length:
                    chunk = conn.recv(RECV_SIZE)
                    if not chunk:
                        return
                    buf += chunk
                buf = buf[length:]
                started = time.perf_counter()
                status, sent = self.respond(conn, request)
                self.access_log(addr, request, status, sent, started)
                if not request.keep_alive:
                    return
        except (OSError, ValueError):
            pass
        finally:
            conn.close()

    def respond(self, conn: socket.socket, request: Request) -> tuple[int, int]:
        """Send the response; returns (status, body bytes)."""
        keep = request.keep_alive
        if request.method != "GET":
            return self.send_small(conn, 405, b"method not allowed\n", keep)
        path = request.target.split("?", 1)[0]
        if path.startswith(ECHO_PREFIX):
            return self.send_small(conn, 200, path[len(ECHO_PREFIX) :].encode(), keep)
        if path.startswith(FILES_PREFIX):
            found = resolve_file(self.directory, path[len(FILES_PREFIX) :])
            if found is not None:
                return self.send_file(conn, found, request, keep)
        return self.send_small(conn, 404, b"not found\n", keep)

    def send_small(self, conn: socket.socket, status: int, body: bytes, keep: bool):
        conn.sendall(response_head(status, TEXT_TYPE, len(body), keep) + body)
        return status, len(body)

    def send_file(self, conn: socket.socket, path: Path, request: Request, keep: bool):
        ctype = content_type(path)
        if wants_gzip(path, request.headers.get("accept-encoding")):
            body = gzip_bytes(path.read_bytes())
            extra = "Content-Encoding: gzip\r\nVary: Accept-Encoding\r\n"
            conn.sendall(response_head(200, ctype, len(body), keep, extra) + body)
            return 200, len(body)
        with path.open("rb") as f:
            size = f.seek(0, 2)
            f.seek(0)
            conn.sendall(response_head(200, ctype, size, keep))
            conn.sendfile(f)
        return 200, size

    def access_log(self, addr, request: Request, status: int, sent: int, started: float) -> None:
        if self.log is None:
            return
        line = json.dumps(
            {
                "ts": time.time(),
                "remote": addr[0],
                "method": request.method,
                "path": request.target,
                "status": status,
                "bytes": sent,
                "ms": round((time.perf_counter() - started) * 1000, 3),
            }
        )
        with self.log_lock:
            self.log.write(line + "\n")


def main() -> None:
    args = parse_args(__doc__)
    log = open(args.log, "a", buffering=1) if args.log else None  # noqa: SIM115
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((args.host, args.port))
    listener.listen(4096)
    print(f"threaded: listening on http://{args.host}:{listener.getsockname()[1]}", flush=True)
    try:
        Server(Path(args.directory).resolve(), log).serve_forever(listener)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
