"""Request smuggling behind real reverse proxies: HAProxy (http mode, `http-reuse always`) and
nginx (`proxy_http_version 1.1`, upstream keepalive) in front of one `reactor serve`.

A catalog of framing vectors (CL with TE, obfuscated Transfer-Encoding, Content-Length
variants, chunk-size and trailer tricks, bare LF, Host games, HTTP/1.0 with TE) goes through
the proxy, each on its own client connection followed by an ordinary request, every request
line naming its vector. Then the proxy's access log (what it forwarded to reactor) and
reactor's (`request` and `rejected` lines) must list the same requests: reactor never sees a
request the proxy did not forward (a smuggled one), and every refusal names the request the
proxy sent. The ordinary request that follows a vector the proxy kept the connection open
for is answered as itself."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.ops.serverproc import (
    ServeProcess,
    base_config,
    read_json_lines,
    wait_until,
    write_config,
)
from tests.ops.test_haproxy import HAPROXY, HAProxy, free_port

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
READ_S = 1.0


def _post(tag: str, fields: list[bytes], body: bytes, version: bytes = b"HTTP/1.1") -> bytes:
    return (b"POST /echo/%s HTTP/1.1\r\nHost: t\r\n" % tag.encode()).replace(
        b"HTTP/1.1", version, 1) + b"".join(f + b"\r\n" for f in fields) + b"\r\n" + body


def _smuggled(tag: str) -> bytes:
    return b"GET /echo/%s-smuggled HTTP/1.1\r\nHost: t\r\n\r\n" % tag.encode()


def _catalog() -> list[tuple[str, bytes]]:
    vectors: list[tuple[str, bytes]] = []

    def add(tag: str, data: bytes) -> None:
        vectors.append((tag, data))

    te = b"Transfer-Encoding: "
    add("cl-te", _post("cl-te", [b"Content-Length: 4", te + b"chunked"],
                       b"0\r\n\r\n" + _smuggled("cl-te")))
    add("te-cl", _post("te-cl", [te + b"chunked", b"Content-Length: 45"],
                       b"0\r\n\r\n" + _smuggled("te-cl")))
    for tag, value in [("te-sp", b" chunked"), ("te-tab", b"chunked\t"), ("te-upper", b"CHUNKED"),
                       ("te-comma", b"chunked,"), ("te-identity-last", b"chunked, identity"),
                       ("te-identity-first", b"identity, chunked"), ("te-x", b"xchunked"),
                       ("te-param", b"chunked;x"), ("te-vt", b"\x0bchunked")]:
        add(tag, _post(tag, [te + value], b"0\r\n\r\n" + _smuggled(tag)))
    add("te-twice", _post("te-twice", [te + b"chunked", te + b"identity"],
                          b"0\r\n\r\n" + _smuggled("te-twice")))
    add("te-space-colon", _post("te-space-colon", [b"Transfer-Encoding : chunked",
                                                   b"Content-Length: 5"],
                                b"0\r\n\r\n" + _smuggled("te-space-colon")))
    add("te-fold", _post("te-fold", [b"Transfer-Encoding:", b" chunked"],
                         b"0\r\n\r\n" + _smuggled("te-fold")))
    # HAProxy forwards this one; reactor refuses it (RFC 9112 6.1: faulty framing)
    add("te-http10", _post("te-http10", [te + b"chunked"], b"0\r\n\r\n" + _smuggled("te-http10"),
                           b"HTTP/1.0"))
    for tag, value in [("cl-zero", b"05"), ("cl-list", b"5, 5"), ("cl-diff", b"5,6"),
                       ("cl-plus", b"+5"), ("cl-huge", b"9" * 30), ("cl-zeros", b"0" * 30 + b"5")]:
        add(tag, _post(tag, [b"Content-Length: " + value], b"hello" + _smuggled(tag)))
    add("cl-twice", _post("cl-twice", [b"Content-Length: 5", b"Content-Length: 6"],
                          b"hello" + _smuggled("cl-twice")))
    for tag, line in [("chunk-ext", b"5 ; a=b"), ("chunk-zeros", b"0" * 20 + b"5"),
                      ("chunk-0x", b"0x5"), ("chunk-quoted-crlf", b'5;a="\r\n"')]:
        add(tag, _post(tag, [te + b"chunked"],
                       line + b"\r\nhello\r\n0\r\n\r\n" + _smuggled(tag)))
    add("chunk-lf", _post("chunk-lf", [te + b"chunked"],
                          b"5\nhello\n0\n\n" + _smuggled("chunk-lf")))
    for tag, trailer in [("trailer-cl", b"Content-Length: 50"), ("trailer-host", b"Host: evil")]:
        add(tag, _post(tag, [te + b"chunked"], b"5\r\nhello\r\n0\r\n" + trailer + b"\r\n\r\n"))
    add("bare-lf", b"GET /echo/bare-lf HTTP/1.1\nHost: t\n\n")
    add("two-hosts", b"GET /echo/two-hosts HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    add("host-userinfo", b"GET /echo/host-userinfo HTTP/1.1\r\nHost: u@a\r\n\r\n")
    add("expect", _post("expect", [b"Content-Length: 5", b"Expect: 100-continue"], b"hello"))
    add("get-body", b"GET /echo/get-body HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
    return vectors


def _send(port: int, tag: str, data: bytes) -> bytes:
    """The vector, then an ordinary request; everything the proxy answers until it closes or
    the ordinary request's answer is in."""
    after = b"GET /echo/%s-after HTTP/1.1\r\nHost: t\r\n\r\n" % tag.encode()
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=READ_S) as sock:
        sock.sendall(data + after)
        deadline = time.monotonic() + READ_S
        while time.monotonic() < deadline and not received.endswith(b"%s-after" % tag.encode()):
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            received += chunk
    return received


@pytest.fixture
def reactor(tmp_path: Path) -> Iterator[tuple[ServeProcess, Path]]:
    log = tmp_path / "reactor-access.log"
    config = write_config(tmp_path / "reactor.toml",
                          base_config(tmp_path, log={"access": str(log)}))
    process = ServeProcess(["--config", str(config)], cwd=tmp_path)
    try:
        process.wait_event("listening")
        yield process, log
    finally:
        process.stop()


def _wait_accepting(port: int, proc: subprocess.Popen[bytes]) -> None:
    def accepting() -> bool:
        assert proc.poll() is None, "the proxy exited at start-up"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True
    wait_until(accepting, what=f"the proxy on port {port}")


def _run_catalog(port: int, forwarded: Callable[[], list[tuple[str, str]]],
                 reactor_log: Path) -> None:
    """Send the catalog; `forwarded()` is what the proxy's log says it sent to reactor."""
    for tag, data in _catalog():
        received = _send(port, tag, data)
        if b"-after" in received:  # the ordinary request got its own answer, and last
            assert received.endswith(b"%s-after" % tag.encode()), (tag, received)

    def seen() -> list[tuple[str, str]]:
        return [(line["method"], line["path"]) for line in read_json_lines(reactor_log)
                if line.get("event") in ("request", "rejected")]
    # both logs are written once each exchange is over, some after the client left
    try:
        wait_until(lambda: sorted(seen(), key=str) == sorted(forwarded(), key=str),
                   what="the same requests in both access logs")
    except AssertionError:
        pass  # the assertion below shows the difference
    time.sleep(0.2)  # a line that should not be there would come now
    assert sorted(seen(), key=str) == sorted(forwarded(), key=str)


@pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed (Debian package `haproxy`)")
def test_haproxy_forwards_what_reactor_sees(tmp_path: Path,
                                            reactor: tuple[ServeProcess, Path]) -> None:
    process, reactor_log = reactor
    front = free_port()
    # HAProxy logs over UDP (a unix datagram socket queues only 10 lines; it drops the rest)
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(0.05)
    log_address = f"127.0.0.1:{receiver.getsockname()[1]}"
    text = f"""
global
    maxconn 256
    log {log_address} format raw local0
defaults
    mode http
    log global
    log-format "%HM %HP %s %ST"
    timeout connect 2s
    timeout client 5s
    timeout server 5s
    timeout http-keep-alive 5s
    http-reuse always
frontend www
    bind 127.0.0.1:8080
    default_backend reactor
backend reactor
    server r1 127.0.0.1:8001
"""
    haproxy = HAProxy(tmp_path, front, [process.port], text)
    try:
        _wait_accepting(front, haproxy.proc)

        lines: list[str] = []

        def forwarded() -> list[tuple[str, str]]:
            while True:
                try:
                    lines.append(receiver.recv(65536).decode("latin-1").strip())
                except TimeoutError:
                    break
            # "%HM %HP %s %ST": requests HAProxy refused itself have no server (<NOSRV>)
            return [(fields[0], fields[1]) for fields in (line.split(" ") for line in lines)
                    if fields[2:3] == ["r1"]]

        _run_catalog(front, forwarded, reactor_log)
    finally:
        haproxy.close()
        receiver.close()


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (Debian package `nginx-light`)")
def test_nginx_forwards_what_reactor_sees(tmp_path: Path,
                                          reactor: tuple[ServeProcess, Path]) -> None:
    process, reactor_log = reactor
    prefix = tmp_path / "nginx"
    (prefix / "logs").mkdir(parents=True)
    proxy_log = prefix / "logs" / "access.log"
    front = free_port()
    temp = "\n".join(f"    {kind}_temp_path {prefix}/{kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    config = prefix / "nginx.conf"
    config.write_text(f"""
daemon off;
master_process off;
error_log {prefix}/logs/error.log;
pid {prefix}/nginx.pid;
events {{ worker_connections 64; }}
http {{
{temp}
    log_format probe '$request_method $uri $upstream_addr';
    access_log {proxy_log} probe;
    upstream reactor {{ server 127.0.0.1:{process.port}; keepalive 4; }}
    server {{
        listen 127.0.0.1:{front};
        location / {{
            proxy_pass http://reactor;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
        }}
    }}
}}
""")
    assert NGINX is not None
    proc = subprocess.Popen([NGINX, "-p", str(prefix), "-c", str(config), "-e", "stderr"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        _wait_accepting(front, proc)

        def forwarded() -> list[tuple[str, str]]:
            # "$request_method $uri $upstream_addr": "-" when nginx refused it itself
            fields = [line.split(" ", 2) for line in proxy_log.read_text().splitlines()]
            return [(method, path) for method, path, upstream in fields if upstream != "-"]

        _run_catalog(front, forwarded, reactor_log)
    finally:
        proc.terminate()
        proc.wait(10)
