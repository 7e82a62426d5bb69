"""Server and client CPU per request for one wrk run against a server that is already running.

`python -m bench.cpureq PID [--label L] [--connections 50] [--duration 4] URL [-H HEADER ...]`
runs wrk as `make bench` does (`taskset -c 1 wrk -t1 -cN -dS -s report.lua URL`, whole
seconds) and prints req/s, the user and system CPU per
request of PID (/proc/PID/stat over the run: all its threads) and of wrk (its rusage), and
their sum. For A/B checks of changes that move work between the server and the kernel, or
between the two cores of a loopback test (the file head with MSG_MORE versus TCP_CORK was
judged this way): the sum shows whether work was saved or only moved to the client's side.
Start the server pinned to CPU 0 yourself; `make bench` measures the whole table.
"""

from __future__ import annotations

import argparse
import os
import resource
from collections.abc import Sequence
from dataclasses import dataclass

from bench import procs
from bench.workloads import Workload
from bench.wrk import run_wrk, wrk_command


@dataclass(frozen=True)
class CpuPerRequest:
    """One run: req/s and CPU microseconds per request, server and wrk, user and system."""

    rps: float
    server_user_us: float
    server_sys_us: float
    wrk_user_us: float
    wrk_sys_us: float

    @property
    def server_us(self) -> float:
        return self.server_user_us + self.server_sys_us

    @property
    def wrk_us(self) -> float:
        return self.wrk_user_us + self.wrk_sys_us

    def line(self, label: str) -> str:
        return (f"{label:12s} {self.rps:9,.0f} req/s  server {self.server_user_us:6.1f} user"
                f" + {self.server_sys_us:6.1f} sys = {self.server_us:6.1f} µs/req  wrk"
                f" {self.wrk_us:6.1f}  sum {self.server_us + self.wrk_us:6.1f}")


def measure(pid: int, url: str, *, connections: int = 50, duration: float = 4.0,
            headers: tuple[str, ...] = ()) -> CpuPerRequest:
    """One wrk run (the harness's command and result parsing) against `url`, both sides'
    CPU divided by the requests it completed."""
    return measure_workload((pid,), url,
                            Workload("cpureq", url, url, connections, headers), duration)


def measure_workload(pids: Sequence[int], url: str, workload: Workload,
                     duration: float) -> CpuPerRequest:
    """`measure` for one of the harness's workloads (its script: pipelining, say), the CPU
    of all of `pids` (nginx: master and worker) counted as the server's."""
    argv = wrk_command(url, workload, duration)
    before = _ticks(pids)
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = run_wrk(argv, duration)  # waits for wrk: its rusage is in RUSAGE_CHILDREN
    after = _ticks(pids)
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    requests = result.requests
    if not requests:
        raise RuntimeError(f"wrk completed no request against {url}")
    tick_us = 1e6 / os.sysconf("SC_CLK_TCK") / requests
    return CpuPerRequest(
        rps=result.rps,
        server_user_us=(after[0] - before[0]) * tick_us,
        server_sys_us=(after[1] - before[1]) * tick_us,
        wrk_user_us=(children_after.ru_utime - children_before.ru_utime) * 1e6 / requests,
        wrk_sys_us=(children_after.ru_stime - children_before.ru_stime) * 1e6 / requests)


def _ticks(pids: Sequence[int]) -> tuple[int, int]:
    """User and system clock ticks of `pids`, summed."""
    ticks = [procs.cpu_ticks(pid) for pid in pids]
    return sum(user for user, _ in ticks), sum(system for _, system in ticks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cpureq")
    parser.add_argument("pid", type=int, help="the server's process (all its threads count)")
    parser.add_argument("url")
    parser.add_argument("--label", default="")
    parser.add_argument("--connections", "-c", type=int, default=50)
    parser.add_argument("--duration", "-d", type=float, default=4.0, help="seconds")
    parser.add_argument("--header", "-H", action="append", default=[])
    args = parser.parse_args(argv)
    result = measure(args.pid, args.url, connections=args.connections,
                     duration=args.duration, headers=tuple(args.header))
    print(result.line(args.label or str(args.pid)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
