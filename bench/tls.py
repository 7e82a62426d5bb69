"""HTTPS measurements: reactor against nginx and uvicorn over TLS, and reactor's TLS/plain ratio.

``python -m bench.tls [--duration 10] [--big-clients 1,50] [--skip-big]``

Each server runs pinned to CPU 0 with one process (nginx: one worker; reactor: one worker;
uvicorn: httptools + uvloop, ``--ssl-keyfile``); wrk (one thread, 50 connections) and curl
run pinned to CPU 1. The certificate is ECDSA P-256 made with ``openssl req`` for this run
(the same for every server). Workloads:

- keep-alive: ``wrk -t1 -c50 https://.../echo/hello`` (plain too, for reactor's ratio);
- full handshakes: the same with ``-H "Connection: close"``: one new TCP connection and one
  full TLS handshake per request (wrk does not resume sessions);
- a 1 GiB file over TLS to 1 and to N concurrent curl clients: MB/s (total) and the peak
  RSS of the server's processes, sampled every 50 ms;
- ``openssl s_client -brief``: the protocol, cipher and ALPN negotiated.

The markdown report goes to stdout and ``bench/results/tls.md``; every command run is
listed in it. nginx comes from apt and uvicorn from ``bench/.venv`` (``bench/peers_setup.py``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench import (
    APPS_DIR,
    CLIENT_CPU,
    HOST,
    LUA_DIR,
    RESULTS_DIR,
    ROOT,
    SERVER_CPU,
    WORK_DIR,
    procs,
)
from bench.peers_setup import SetupInfo, ensure_venv, venv_python
from bench.wrk import WrkResult, parse_wrk_output

CONNECTIONS = 50
BIG_BYTES = 1 << 30
NGINX_TLS_CONF = """\
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 20000;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 16384; multi_accept on; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    sendfile on;
    keepalive_timeout 300s;
    keepalive_requests 10000000;
    server_tokens off;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port} ssl backlog=4096;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        location ~ ^/echo/(?<text>.*)$ {{
            default_type "text/plain; charset=utf-8";
            return 200 $text;
        }}
        location /files/ {{ alias {www}/; }}
    }}
}}
"""


@dataclass
class Server:
    name: str
    proc: subprocess.Popen
    tls_port: int
    plain_port: int | None = None


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)

    def add(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)


def pinned(argv: list[str], cpu: str) -> list[str]:
    return ["taskset", "-c", cpu, *argv]


def make_certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def make_big_file(www: Path) -> Path:
    path = www / "big.bin"
    if not path.exists() or path.stat().st_size != BIG_BYTES:
        block = os.urandom(1 << 20)
        with path.open("wb") as file:
            for _ in range(BIG_BYTES >> 20):
                file.write(block)
    return path


def wait_tls(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        done = subprocess.run(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}",
                               f"https://{HOST}:{port}/echo/ready"], capture_output=True)
        if done.stdout == b"200":
            return
        time.sleep(0.2)
    raise RuntimeError(f"no HTTPS answer on port {port}")


def start_reactor(work: Path, www: Path, cert: Path, key: Path) -> Server:
    plain, tls = procs.free_port(), procs.free_port()
    argv = pinned([sys.executable, "-m", "reactor", "serve", "--no-config",
                   "--port", str(plain), "--tls-port", str(tls), "--cert", str(cert),
                   "--key", str(key), "--directory", str(www),
                   "--log", str(work / "reactor-access.log"),
                   "--error-log", str(work / "reactor-error.log")], SERVER_CPU)
    proc = procs.spawn(argv, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    wait_tls(tls, proc)
    return Server("reactor", proc, tls, plain)


def start_nginx(work: Path, www: Path, cert: Path, key: Path) -> Server:
    prefix = work / "nginx"
    for sub in ("tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    port = procs.free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_TLS_CONF.format(prefix=prefix, port=port, cert=cert, key=key,
                                          www=www))
    proc = procs.spawn(pinned(["nginx", "-p", str(prefix), "-c", str(conf)], SERVER_CPU))
    wait_tls(port, proc)
    return Server("nginx", proc, port)


def start_uvicorn(work: Path, www: Path, cert: Path, key: Path) -> Server:
    port = procs.free_port()
    argv = pinned([venv_python(), "-m", "uvicorn", "asgi_app:app", "--app-dir", str(APPS_DIR),
                   "--host", HOST, "--port", str(port), "--ssl-keyfile", str(key),
                   "--ssl-certfile", str(cert), "--http", "httptools", "--loop", "uvloop",
                   "--log-level", "warning", "--backlog", "4096"], SERVER_CPU)
    log = (work / "uvicorn.log").open("w")
    proc = procs.spawn(argv, stdout=log, env=dict(os.environ, BENCH_WWW=str(www)))
    wait_tls(port, proc)
    return Server("uvicorn", proc, port)


def wrk(url: str, duration: float, *headers: str) -> WrkResult:
    argv = pinned(["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{duration:g}s", "--timeout", "5s",
                   "-s", str(LUA_DIR / "report.lua")], CLIENT_CPU)
    for header in headers:
        argv += ["-H", header]
    argv.append(url)
    proc = procs.spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = proc.communicate(timeout=duration + 60)
    procs.stop(proc)
    return parse_wrk_output(out.decode(errors="replace"))


def sample_peak_rss(pgid: int, stop: threading.Event, into: list[int]) -> None:
    while not stop.is_set():
        into.append(procs.group_rss_kib(pgid))
        stop.wait(0.05)


def big_download(server: Server, ca: Path, clients: int) -> tuple[float, int, int, str]:
    """(MB/s in total, peak server RSS KiB, RSS before KiB, the command)."""
    url = f"https://localhost:{server.tls_port}/files/big.bin"
    argv = pinned(["curl", "-s", "-o", "/dev/null", "--cacert", str(ca), "-w",
                   "%{size_download}\n", url], CLIENT_CPU)
    before = procs.group_rss_kib(server.proc.pid)
    samples: list[int] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_peak_rss, args=(server.proc.pid, stop, samples))
    sampler.start()
    started = time.monotonic()
    running = [subprocess.Popen(argv, stdout=subprocess.PIPE) for _ in range(clients)]
    sizes = [int(proc.communicate()[0] or 0) for proc in running]
    elapsed = time.monotonic() - started
    stop.set()
    sampler.join()
    if any(size != BIG_BYTES for size in sizes):
        raise RuntimeError(f"short downloads: {sizes}")
    return sum(sizes) / elapsed / 1e6, max(samples), before, " ".join(argv)


def s_client(port: int) -> tuple[str, str]:
    argv = ["openssl", "s_client", "-connect", f"{HOST}:{port}", "-servername", "localhost",
            "-alpn", "http/1.1", "-brief"]
    done = subprocess.run(argv, input=b"", capture_output=True, timeout=20)
    text = (done.stdout + done.stderr).decode(errors="replace")
    return " ".join(argv) + " </dev/null", text.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tls")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--big-clients", default="1,50", help="client counts for 1 GiB")
    parser.add_argument("--skip-big", action="store_true", help="no 1 GiB downloads")
    parser.add_argument("--servers", default="reactor,nginx,uvicorn")
    parser.add_argument("--big-servers", default="reactor",
                        help="servers measured with the 1 GiB downloads")
    args = parser.parse_args(argv)
    procs.install_signal_handlers()
    procs.raise_nofile_limit()
    work = WORK_DIR / "tls"
    www = work / "www"
    www.mkdir(parents=True, exist_ok=True)
    cert, key = make_certificate(work)
    (www / "hello.txt").write_text("hello\n")
    info = SetupInfo()
    if "uvicorn" in args.servers:
        ensure_venv(info)
    starters: dict[str, Callable[[Path, Path, Path, Path], Server]] = {
        "reactor": start_reactor, "nginx": start_nginx, "uvicorn": start_uvicorn}
    report = Report()
    report.add(f"# HTTPS benchmark ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})")
    report.add()
    report.add(f"Server on CPU {SERVER_CPU}, client on CPU {CLIENT_CPU}; {os.cpu_count()} "
               f"CPUs shared with other work; wrk -t1 -c{CONNECTIONS} -d{args.duration:g}s; "
               "ECDSA P-256 certificate.")
    report.add()
    report.add("| server | keep-alive req/s | p99 ms | full handshakes/s (Connection: close) "
               "| p99 ms | errors |")
    report.add("|---|---|---|---|---|---|")
    extra: list[str] = []
    try:
        for name in args.servers.split(","):
            server = starters[name](work, www, cert, key)
            try:
                url = f"https://{HOST}:{server.tls_port}/echo/hello"
                keep = wrk(url, args.duration)
                full = wrk(url, args.duration, "Connection: close")
                report.add(f"| {name} | {keep.rps:,.0f} | {keep.p99_ms:.1f} | {full.rps:,.0f} "
                           f"| {full.p99_ms:.1f} | {keep.errors_text()} / "
                           f"{full.errors_text()} |")
                if server.plain_port is not None:
                    plain_url = f"http://{HOST}:{server.plain_port}/echo/hello"
                    plain = wrk(plain_url, args.duration)
                    plain_close = wrk(plain_url, args.duration, "Connection: close")
                    extra.append(
                        f"reactor plain HTTP on the same process: keep-alive "
                        f"{plain.rps:,.0f} req/s, new connection per request "
                        f"{plain_close.rps:,.0f} req/s; TLS/plain = "
                        f"{keep.rps / plain.rps:.2f} keep-alive, "
                        f"{full.rps / plain_close.rps:.2f} with a handshake per request")
                if name == "reactor":
                    cmd_text, text = s_client(server.tls_port)
                    extra.append(f"`{cmd_text}`:\n\n```\n{text}\n```")
                if not args.skip_big and name in args.big_servers.split(","):
                    make_big_file(www)
                    for clients in (int(n) for n in args.big_clients.split(",")):
                        rate, peak, before, cmd_text = big_download(server, cert, clients)
                        procs.COMMANDS.append(f"{clients} x concurrently: {cmd_text}")
                        extra.append(f"{name}: 1 GiB over TLS to {clients} client(s): "
                                     f"{rate:,.0f} MB/s in total; server RSS {before / 1024:.0f}"
                                     f" MiB before, peak {peak / 1024:.0f} MiB")
            finally:
                procs.stop(server.proc)
    finally:
        procs.stop_all()
    report.add()
    for line in extra:
        report.add(f"- {line}" if not line.startswith("`") else line)
        report.add()
    report.add("Commands:")
    report.add()
    report.add("```")
    for command in procs.COMMANDS:
        report.add(command)
    report.add("```")
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "tls.md").write_text("\n".join(report.lines) + "\n")
    if shutil.which("wrk") is None:
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
