"""The fused answer of a small 200 or a 304 (`Exchange._respond_small`) against the general
path: the same requests through both give the same bytes on the wire and the same access
lines."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

import pytest

from reactor.app.application import build_app
from reactor.app.types import Request, Response
from reactor.conn import exchange
from reactor.conn.server import HttpServer
from reactor.ops.logging import ServerLog
from tests.conn.conftest import TIMEOUT_S, LoopThread, recv_all

H = b"Host: x\r\nUser-Agent: t/1\r\n"
SCRIPTS = [
    # keep-alive, pipelined, then a close; request ids given and made by the server
    b"GET /echo/abc HTTP/1.1\r\n" + H + b"X-Request-ID: r1\r\n\r\n"
    b"GET /echo/%C3%A9?q=%22x%22 HTTP/1.1\r\n" + H + b"Referer: http://r/\"\r\n\r\n"
    b"HEAD /echo/abc HTTP/1.1\r\n" + H + b"\r\n"
    b"GET /user-agent HTTP/1.1\r\n" + H + b"\r\n"
    b"GET / HTTP/1.1\r\n" + H + b"\r\n"
    b"GET /echo/zip HTTP/1.1\r\n" + H + b"Accept-Encoding: gzip\r\n\r\n"
    b"GET /sized HTTP/1.1\r\n" + H + b"\r\n"
    b"GET /missing HTTP/1.1\r\n" + H + b"\r\n"
    b"GET /echo/last HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n",
    b"GET /echo/old HTTP/1.0\r\n\r\n",
    b"GET /echo/old HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /closer HTTP/1.1\r\n" + H
    + b"\r\n",
    b"GET /bad-length HTTP/1.1\r\n" + H + b"\r\n",
    b"GET /echo/x HTTP/1.1\r\n" + H + b"\r\n",
    # 304s: plain, to a HEAD, with the app's Content-Length (a GET's length), to HTTP/1.0
    b"GET /fresh HTTP/1.1\r\n" + H + b"\r\n"
    b"HEAD /fresh HTTP/1.1\r\n" + H + b"\r\n"
    b"GET /fresh-sized HTTP/1.1\r\n" + H + b"\r\n"
    b"GET /fresh HTTP/1.0\r\n\r\n",
]
VALIDATORS = [(b"ETag", b'"v1"'), (b"Vary", b"Accept-Encoding")]


def sized(_request: Request) -> Response:
    return Response(200, [(b"Content-Length", b"5"), (b"Content-Type", b"text/plain")],
                    b"sized")


def closer(_request: Request) -> Response:
    return Response(200, [(b"Connection", b"close"), (b"X-Thing", b"1")], b"bye")


def bad_length(_request: Request) -> Response:
    return Response(200, [(b"Content-Length", b"9")], b"short")


def fresh(_request: Request) -> Response:
    return Response(304, VALIDATORS)


def fresh_sized(_request: Request) -> Response:
    return Response(304, [*VALIDATORS, (b"Content-Length", b"1234")])


def run_scripts(loop_thread: LoopThread, log_path: Path) -> list[bytes]:
    app = build_app(directory=None)
    app.get("/sized", inline=True)(sized)
    app.get("/closer", inline=True)(closer)
    app.get("/bad-length", inline=True)(bad_length)
    app.get("/fresh", inline=True)(fresh)
    app.get("/fresh-sized", inline=True)(fresh_sized)
    log = ServerLog(access=str(log_path), error=str(log_path) + ".err")
    server = loop_thread.run(lambda: HttpServer(loop_thread.loop, app, log))
    answers = []
    for script in SCRIPTS:
        server_side, client = socket.socketpair()
        server_side.setblocking(False)
        client.settimeout(TIMEOUT_S)
        loop_thread.run(server.accept, server_side, ("127.0.0.1", 40000))
        client.sendall(script)
        client.shutdown(socket.SHUT_WR)  # a half-close: what was sent is answered
        answers.append(recv_all(client))
        client.close()
    loop_thread.run(log.close)
    return answers


def normalized(answer: bytes) -> bytes:
    answer = re.sub(rb"Date: [^\r]*\r\n", b"Date: -\r\n", answer)
    answer = re.sub(rb"request id: [0-9a-f]+-[0-9a-f]+\n", b"request id: -\n", answer)
    return re.sub(rb"X-Request-ID: [0-9a-f]+-[0-9a-f]+\r\n", b"X-Request-ID: -\r\n", answer)


def access_lines(path: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for line in lines:
        line.pop("ts")
        line.pop("duration_ms")
        if line["request_id"] != "r1":
            line["request_id"] = "-"
        line.pop("conn_id")
    return lines


def test_the_fused_path_answers_and_logs_like_the_general_path(
        loop_thread: LoopThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fused = run_scripts(loop_thread, tmp_path / "fused.log")
    monkeypatch.setattr(exchange, "_FUSED_MAX", -1)  # every response takes the general path
    general = run_scripts(loop_thread, tmp_path / "general.log")
    assert [normalized(a) for a in fused] == [normalized(a) for a in general]
    assert access_lines(tmp_path / "fused.log") == access_lines(tmp_path / "general.log")
    assert fused[0].count(b"HTTP/1.1 200 OK") == 8 and b"404 Not Found" in fused[0]
    assert b"HTTP/1.1 500" in fused[3]  # the app's wrong Content-Length, on both paths
    assert fused[-1].count(b"HTTP/1.1 304 Not Modified\r\n") == 4
    assert b"Content-Length: 1234\r\n" in fused[-1]
    assert len(access_lines(tmp_path / "fused.log")) == 18
