"""What 16-deep pipelining can gain on this machine: reactor against the floor and nginx.

`python -m bench.pipegain [--duration 5] [--rounds 3]` starts, one at a time pinned to CPU 0,
bench/apps/floor.py (a selectors loop that answers every request head in a read with one
canned answer: no parsing, no log, the least a Python server can do), reactor as `make bench`
runs it (JSON access log to a file) and nginx (when installed), and loads each with wrk on
CPU 1 for `echo50` and `pipeline16`, the harness's workloads. It prints the best req/s of
`--rounds` runs and the server's CPU µs per request in that run, and the gain of pipelining
(pipeline16 / echo50 req/s).

Why: issue 14 asks pipeline16 >= 3x reactor's own echo50. With C1 and C16 the server's CPU
per request in the two workloads, and the server saturated in both, the gain is C1 / C16.
Split each into the floor's cost (kernel + the least Python: F1, F16) and reactor's own work
per request P (the same in both: parse, route, frame, log): (F1 + P) / (F16 + P) >= 3 needs
P <= (F1 - 3 * F16) / 2. The last line prints that bound next to reactor's measured P.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass

from bench import APPS_DIR, HOST, SERVER_CPU, procs
from bench.content import ensure_content
from bench.cpureq import CpuPerRequest, measure_workload
from bench.servers import BY_NAME, LOG_DIR, ServerError, start, wait_ready
from bench.workloads import BY_NAME as WORKLOADS

PAIR = ("echo50", "pipeline16")


@dataclass
class Row:
    name: str
    best: dict[str, CpuPerRequest]

    def gain(self) -> float:
        return self.best["pipeline16"].rps / self.best["echo50"].rps


def _runs(name: str, pgid: int, port: int, duration: float, rounds: int) -> Row:
    best: dict[str, CpuPerRequest] = {}
    for _ in range(rounds):
        for workload in PAIR:  # interleaved, so a noisy moment hits both alike
            url = f"http://{HOST}:{port}{WORKLOADS[workload].path}"
            result = measure_workload(procs.group_pids(pgid), url, WORKLOADS[workload],
                                      duration)
            if workload not in best or result.rps > best[workload].rps:
                best[workload] = result
    for workload in PAIR:
        print(best[workload].line(f"{name} {workload}"), flush=True)
    return Row(name, best)


def _floor(duration: float, rounds: int) -> Row:
    port = procs.free_port()
    proc = procs.spawn(["taskset", "-c", SERVER_CPU, sys.executable, str(APPS_DIR / "floor.py"),
                        "--host", HOST, "--port", str(port)])
    try:
        wait_ready(port, proc, 10.0)
        return _runs("floor", proc.pid, port, duration, rounds)
    finally:
        procs.stop(proc)


def _server(name: str, duration: float, rounds: int) -> Row:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    running = start(BY_NAME[name], ensure_content().www)
    try:
        return _runs(name, running.proc.pid, running.port, duration, rounds)
    finally:
        procs.stop(running.proc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pipegain")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per workload, best kept")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (make bench installs it)", file=sys.stderr)
        return 2
    procs.install_signal_handlers()
    rows: list[Row] = []
    try:
        rows.append(_floor(args.duration, args.rounds))
        rows.append(_server("reactor", args.duration, args.rounds))
        if shutil.which("nginx"):
            rows.append(_server("nginx", args.duration, args.rounds))
    except ServerError as exc:
        print(f"a server did not start: {exc}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
    print()
    for row in rows:
        c1, c16 = row.best["echo50"].server_us, row.best["pipeline16"].server_us
        print(f"{row.name:8s} pipeline16/echo50 {row.gain():5.2f}x  (server CPU per request"
              f" {c1:5.1f} -> {c16:5.1f} µs)")
    floor, reactor = rows[0].best, rows[1].best
    f1, f16 = floor["echo50"].server_us, floor["pipeline16"].server_us
    own = reactor["echo50"].server_us - f1
    print(f"3x needs reactor's own work per request P <= (F1 - 3*F16) / 2 ="
          f" ({f1:.1f} - 3*{f16:.1f}) / 2 = {(f1 - 3 * f16) / 2:.1f} µs; measured P ="
          f" {own:.1f} µs (echo50 minus floor)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
