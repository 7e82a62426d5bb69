"""req/s of a trivial JSON route: reactor's native API (inline, pooled) and Flask under
reactor, waitress and gunicorn (gthread), one worker process each.

`python -m bench.apps_bench [--duration S] [--connections N]` sets up what it needs
(idempotent: `apt-get install wrk` when missing, and a venv `bench/.work/apps-venv` with the
pinned Flask, waitress and gunicorn, as bench/peers_setup.py does for the other peers), then
runs each server pinned to CPU 0 (`taskset -c 0`) and `wrk -t1` pinned to CPU 1 against
`GET /json`, one server at a time, after a warm-up. Prints a Markdown table: req/s, and the
CPU time the server's processes used per request (user + system, from /proc), which moves
far less than req/s on a machine shared with other work.

Logging: reactor writes its JSON access log to a file (its default behaviour), gunicorn its
access log to a file; waitress has no access log of its own. All run 4 threads in the one
worker (reactor `pool_threads`, waitress `--threads`, gunicorn `--threads`).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench import BENCH_DIR, CLIENT_CPU, ROOT, SERVER_CPU, WORK_DIR
from bench.procs import free_port, group_cpu_s, stop

APPS = BENCH_DIR / "apps"
VENV = WORK_DIR / "apps-venv"
PINS = ("flask==3.1.3", "waitress==3.0.2", "gunicorn==27.0.1")
STAMP = VENV / ".installed"


def setup() -> None:
    if shutil.which("wrk") is None and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False,
                       stdout=subprocess.DEVNULL)
    if shutil.which("wrk") is None:
        raise SystemExit("apps_bench: wrk is not installed (apt-get install wrk)")
    if STAMP.exists() and STAMP.read_text() == "\n".join(PINS):
        return
    WORK_DIR.mkdir(exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", *PINS], check=True)
    STAMP.write_text("\n".join(PINS))


def servers(port: int, logs: Path) -> dict[str, tuple[list[str], Path]]:
    reactor = [sys.executable, "-m", "reactor", "serve", "--no-config", "--host", "127.0.0.1",
               "--port", str(port), "--app-dir", str(APPS), "--log", str(logs / "access.log"),
               "--error-log", str(logs / "error.log")]
    venv = VENV / "bin"
    return {
        "reactor native, inline": ([*reactor, "--app", "native_json:inline"], ROOT),
        "reactor native, pooled": ([*reactor, "--app", "native_json:pooled"], ROOT),
        "Flask under reactor (--wsgi)": ([*reactor, "--wsgi", "flask_json:app"], ROOT),
        "Flask under waitress": ([str(venv / "waitress-serve"), f"--listen=127.0.0.1:{port}",
                                  "--threads=4", "flask_json:app"], APPS),
        "Flask under gunicorn gthread": (
            [str(venv / "gunicorn"), "-w", "1", "-k", "gthread", "--threads", "4", "-b",
             f"127.0.0.1:{port}", "--access-logfile", str(logs / "gunicorn-access.log"),
             "--error-logfile", str(logs / "gunicorn-error.log"), "flask_json:app"], APPS),
    }


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"GET /json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if b"Hello, World!" in sock.recv(65536):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server did not answer in time")


def wrk(port: int, duration: float, connections: int) -> tuple[float, int]:
    out = subprocess.run(
        ["taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{connections}", f"-d{round(duration)}s",
         f"http://127.0.0.1:{port}/json"], check=True, capture_output=True, text=True).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    total = re.search(r"(\d+) requests in", out)
    if match is None or total is None:
        raise RuntimeError(f"no result from wrk: {out}")
    if errors is not None:
        print(f"  wrk reported: {errors.group(0)}", file=sys.stderr)
    return float(match.group(1)), int(total.group(1))


def run(duration: float, connections: int, warmup: float, only: str = ""
        ) -> list[tuple[str, float, float]]:
    rows = []
    logs = WORK_DIR / "apps-logs"
    logs.mkdir(parents=True, exist_ok=True)
    for name, (argv, cwd) in servers(free_port(), logs).items():
        if only and only not in name:
            continue
        port = int(argv[argv.index("--port") + 1]) if "--port" in argv else None
        if port is None:
            port = int(next(a for a in argv if "127.0.0.1:" in a).rsplit(":", 1)[1])
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = subprocess.Popen(["taskset", "-c", SERVER_CPU, *argv], cwd=cwd, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)  # its group holds its workers
        try:
            wait_ready(port, proc)
            wrk(port, warmup, connections)
            before = group_cpu_s(proc.pid)
            rps, total = wrk(port, duration, connections)
            cpu_us = (group_cpu_s(proc.pid) - before) / max(1, total) * 1e6
            rows.append((name, rps, cpu_us))
            print(f"{name}: {rps:,.0f} req/s, {cpu_us:.0f} µs CPU/request", file=sys.stderr,
                  flush=True)
        finally:
            stop(proc, grace=15.0)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.apps_bench")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--only", default="", help="run the servers whose name contains this")
    args = parser.parse_args(argv)
    setup()
    rows = run(args.duration, args.connections, args.warmup, args.only)
    print(f"| GET /json ({args.connections} connections, {args.duration:g} s) | req/s |"
          " server CPU µs/request |")
    print("|---|---:|---:|")
    for name, rps, cpu_us in rows:
        print(f"| {name} | {rps:,.0f} | {cpu_us:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
