"""Running wrk and reading its result.

wrk runs pinned to the client CPU with one thread; ``bench/lua/report.lua`` (loaded
by every script) prints a ``BENCH_JSON {...}`` line from wrk's ``done()`` hook,
which :func:`parse_wrk_output` reads.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from bench import CLIENT_CPU, LUA_DIR, procs
from bench.workloads import Workload

MARKER = "BENCH_JSON "
ERROR_KINDS = ("connect", "read", "write", "status", "timeout")


class WrkError(RuntimeError):
    """wrk failed or printed no result line."""


@dataclass
class WrkResult:
    """One wrk run, in friendly units."""

    requests: int
    duration_s: float
    bytes: int
    errors: dict[str, int] = field(default_factory=dict)
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    mean_ms: float = 0.0
    max_ms: float = 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def total_errors(self) -> int:
        return sum(self.errors.values())

    def errors_text(self) -> str:
        """``0`` or e.g. ``12 (read 10, timeout 2)``."""
        if not self.total_errors:
            return "0"
        parts = ", ".join(f"{k} {v}" for k, v in self.errors.items() if v)
        return f"{self.total_errors} ({parts})"


def parse_wrk_output(text: str) -> WrkResult:
    """Parse the ``BENCH_JSON`` line printed by ``report.lua``."""
    for line in reversed(text.splitlines()):
        if line.startswith(MARKER):
            data = json.loads(line[len(MARKER) :])
            break
    else:
        raise WrkError(f"no {MARKER.strip()} line in wrk output: {text[-500:]!r}")
    lat = data["latency_us"]
    return WrkResult(
        requests=int(data["requests"]),
        duration_s=data["duration_us"] / 1e6,
        bytes=int(data["bytes"]),
        errors={k: int(data["errors"].get(k, 0)) for k in ERROR_KINDS},
        p50_ms=lat["p50"] / 1000,
        p90_ms=lat["p90"] / 1000,
        p99_ms=lat["p99"] / 1000,
        mean_ms=lat["mean"] / 1000,
        max_ms=lat["max"] / 1000,
    )


def wrk_command(url: str, workload: Workload, duration: float) -> list[str]:
    """The full command line for one run of ``workload`` against ``url``."""
    argv = ["taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{workload.connections}",
            f"-d{max(1, round(duration))}s", "--timeout", "5s",
            "-s", str(LUA_DIR / workload.script)]
    for header in workload.headers:
        argv += ["-H", header]
    argv.append(url)
    if workload.script_args:
        argv += ["--", *workload.script_args]
    return argv


def run_wrk(argv: list[str], duration: float, log: Path | None = None) -> WrkResult:
    """Run wrk (killable through the process registry) and parse its result."""
    proc = procs.spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = proc.communicate(timeout=duration + 30)
    except subprocess.TimeoutExpired as exc:
        raise WrkError(f"wrk did not finish within {duration + 30:.0f} s") from exc
    finally:
        procs.stop(proc)
    text = out.decode(errors="replace")
    if log is not None:
        with log.open("a") as f:
            f.write(f"$ {' '.join(argv)}\n{text}\n")
    return parse_wrk_output(text)
