"""The floor for a Python server on this machine: selectors, one recv, canned answers, no HTTP.

Each readable socket is read once; every complete request head in what arrived (counted by
``b"\\r\\n\\r\\n"``, nothing parsed) gets the same canned `/echo/abc` answer, all of them
in one ``send``; no log, no routing, no header checks. No real server can do less per
request in Python, so what it costs per request is the kernel's share plus the least Python
a selectors loop needs: ``python -m bench.pipegain`` compares reactor's pipelining gain with
this one's. Not a server to use: a request split across reads is answered when its end
arrives, bodies are not read, a slow client gets no flow control.

``python floor.py --host 127.0.0.1 --port 8080`` (standard library only).
"""

from __future__ import annotations

import argparse
import selectors
import socket

ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nabc")


def serve(host: str, port: int) -> None:
    listener = socket.create_server((host, port), backlog=1024)
    listener.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, None)
    partial: dict[socket.socket, bytes] = {}
    answers = [ANSWER * n for n in range(65)]
    print(f"listening on {host}:{listener.getsockname()[1]}", flush=True)
    while True:
        for key, _events in selector.select():
            sock = key.fileobj
            if sock is listener:
                try:
                    conn, _addr = listener.accept()
                except BlockingIOError:
                    continue
                conn.setblocking(False)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                selector.register(conn, selectors.EVENT_READ, None)
                continue
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                selector.unregister(sock)
                partial.pop(sock, None)
                sock.close()
                continue
            before = partial.pop(sock, b"")
            if before:
                data = before + data
            heads = data.count(b"\r\n\r\n")
            rest = data[data.rfind(b"\r\n\r\n") + 4:] if heads else data
            if rest:
                partial[sock] = rest
            if heads:
                try:  # loopback with small answers: the socket takes it all (a toy)
                    sock.send(answers[heads] if heads < len(answers) else ANSWER * heads)
                except OSError:
                    pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args, _ = parser.parse_known_args()
    serve(args.host, args.port)


if __name__ == "__main__":
    main()
