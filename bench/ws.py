"""WebSocket measurements: echo messages/s and RSS per idle connection, reactor vs peers.

    python -m bench.ws                      # everything: echo (1 and 100 connections), idle RSS
    python -m bench.ws --servers reactor --idle 5000 --seconds 5

Servers: reactor (`reactor serve`, /ws/echo), the `websockets` library and aiohttp, each in
one process on CPU 0 with plain asyncio/selectors (no uvloop), the peers from their own venv
(bench/.work/ws-venv, created on first use with pinned versions). The client runs on CPU 1:
N connections over one selector, each sending a small masked text frame and waiting for its
echo before the next (so 1 connection measures a round trip, 100 measure throughput).
Idle RSS: VmRSS of the server process after opening N connections (each having exchanged one
message), minus before, over N; with and without permessage-deflate offered by the client.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import selectors
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench import BENCH_DIR, HOST
from bench.procs import free_port, raise_nofile_limit, rss_kib, spawn, stop
from reactor.proto.websocket import OP_TEXT, encode_frame

PEER_VENV = BENCH_DIR / ".work" / "ws-venv"
PEERS = ("websockets==17.4", "aiohttp==3.14.5")
SERVER_CPU, CLIENT_CPU = 0, 1
MESSAGE = b"hello, websocket!"  # small text message
PATH = "/ws/echo"

WEBSOCKETS_APP = """
import asyncio, sys
from websockets.asyncio.server import serve
async def echo(ws):
    async for message in ws:
        await ws.send(message)
async def main():
    async with serve(echo, "127.0.0.1", int(sys.argv[1]), max_size=2**20,
                     compression="deflate" if sys.argv[2] == "1" else None):
        print("ready", flush=True)
        await asyncio.get_running_loop().create_future()
asyncio.run(main())
"""

AIOHTTP_APP = """
import sys
from aiohttp import WSMsgType, web
DEFLATE = sys.argv[2] == "1"
async def echo(request):
    ws = web.WebSocketResponse(compress=DEFLATE, max_msg_size=2**20)
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == WSMsgType.TEXT:
            await ws.send_str(msg.data)
        elif msg.type == WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    return ws
app = web.Application()
app.router.add_get("/ws/echo", echo)
print("ready", flush=True)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def ensure_peers() -> Path:
    python = PEER_VENV / "bin" / "python"
    stamp = PEER_VENV / ".installed"
    if not (stamp.exists() and stamp.read_text() == "\n".join(PEERS)):
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PEERS], check=True)
        stamp.write_text("\n".join(PEERS))
    return python


def pinned(argv: list[str]) -> list[str]:
    return ["taskset", "-c", str(SERVER_CPU), *argv] if _have("taskset") else argv


def _have(tool: str) -> bool:
    return any((Path(p) / tool).exists() for p in os.environ.get("PATH", "").split(":"))


def start_server(name: str, port: int, workdir: Path) -> subprocess.Popen:
    """Start `name` on `port` (deflate enabled where the server supports it)."""
    if name == "reactor":
        config = workdir / "reactor.toml"
        config.write_text(f'[server]\nlisten = ["{HOST}:{port}"]\nmax_connections = 20000\n'
                          f'[log]\naccess = "{workdir / "access.log"}"\n'
                          f'error = "{workdir / "error.log"}"\n')
        argv = [sys.executable, "-m", "reactor", "serve", "--config", str(config)]
    else:
        script = workdir / f"{name}_app.py"
        script.write_text(WEBSOCKETS_APP if name == "websockets" else AIOHTTP_APP)
        argv = [str(ensure_peers()), str(script), str(port), "1"]
    proc = spawn(pinned(argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.1)
    stop(proc)
    raise RuntimeError(f"{name} did not start")


def handshake(port: int, *, deflate: bool = False) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16)).decode()
    extra = ("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
             if deflate else "")
    sock.sendall((f"GET {PATH} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  f"Sec-WebSocket-Version: 13\r\n{extra}\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        buf += chunk
    if not buf.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(buf[:200].decode("latin-1"))
    return sock


def echo_rate(port: int, conns: int, seconds: float) -> float:
    """Messages echoed per second over `conns` connections, one message in flight each.

    Replies to the uncompressed 17-byte text are 19 bytes each (2-byte header), so the
    client counts bytes instead of parsing frames.
    """
    frame = encode_frame(OP_TEXT, MESSAGE, mask=os.urandom(4))
    reply = 2 + len(MESSAGE)
    socks = [handshake(port) for _ in range(conns)]
    selector = selectors.DefaultSelector()
    socks_by_fd = {sock.fileno(): sock for sock in socks}
    pending = {}
    for sock in socks:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        pending[sock] = 0
        sock.send(frame)
    done = 0
    warm_until = time.monotonic() + 1.0
    started = None
    end = warm_until + seconds
    while True:
        now = time.monotonic()
        if started is None and now >= warm_until:
            started, done = now, 0
        if now >= end:
            break
        for key, _ in selector.select(0.5):
            sock = socks_by_fd[key.fd]
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("server closed a connection")
            got = pending[sock] + len(data)
            replies, pending[sock] = divmod(got, reply)
            done += replies
            if replies:
                sock.send(frame)
    elapsed = time.monotonic() - (started or warm_until)
    for sock in socks:
        sock.close()
    return done / elapsed


def idle_rss(proc: subprocess.Popen, port: int, conns: int, *, deflate: bool) -> float:
    """KiB of server RSS per open, idle connection (each has echoed one message)."""
    warm = [handshake(port, deflate=deflate) for _ in range(20)]
    time.sleep(0.5)
    before = rss_kib(proc.pid)
    socks = []
    for _ in range(conns):
        sock = handshake(port, deflate=deflate)
        socks.append(sock)
    # one message each (uncompressed frames are valid with deflate too) then idle
    frame = encode_frame(OP_TEXT, MESSAGE, mask=os.urandom(4))
    for sock in socks:
        sock.sendall(frame)
    for sock in socks:
        sock.settimeout(10)
        sock.recv(4096)
    time.sleep(1.0)
    after = rss_kib(proc.pid)
    for sock in socks + warm:
        sock.close()
    return (after - before) / conns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default="reactor,websockets,aiohttp")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--idle", type=int, default=5000, help="connections for idle RSS")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    raise_nofile_limit()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {CLIENT_CPU})
    workdir = BENCH_DIR / ".work" / "ws"
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, float]] = {}
    for name in args.servers.split(","):
        row: dict[str, float] = {}
        for measure in ("echo1", "echo100", "idle", "idle_deflate"):
            port = free_port()
            proc = start_server(name, port, workdir)
            try:
                if measure == "echo1":
                    row["echo_msgs_per_s_1conn"] = round(echo_rate(port, 1, args.seconds))
                elif measure == "echo100":
                    row["echo_msgs_per_s_100conn"] = round(echo_rate(port, 100, args.seconds))
                elif measure == "idle":
                    row["idle_kib_per_conn"] = round(idle_rss(proc, port, args.idle,
                                                              deflate=False), 2)
                else:
                    row["idle_kib_per_conn_deflate"] = round(idle_rss(proc, port, args.idle,
                                                                      deflate=True), 2)
            finally:
                stop(proc)
            print(f"{name} {measure}: {row}", file=sys.stderr, flush=True)
        results[name] = row
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print("| server | echo msg/s, 1 conn | echo msg/s, 100 conns | idle KiB/conn |"
              " idle KiB/conn, deflate |")
        print("|---|---|---|---|---|")
        for name, row in results.items():
            print(f"| {name} | {row['echo_msgs_per_s_1conn']:,} |"
                  f" {row['echo_msgs_per_s_100conn']:,} | {row['idle_kib_per_conn']} |"
                  f" {row['idle_kib_per_conn_deflate']} |")


if __name__ == "__main__":
    main()
