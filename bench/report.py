"""Markdown report: machine info, one table per workload, ratios, idle test, commands.

Everything here is pure formatting over the records the CLI collects, so it is
tested without any server (``bench/test_harness.py``).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from bench import ROOT
from bench.idle import IdleResult
from bench.workloads import Workload
from bench.wrk import WrkResult

REACTOR = "reactor"
NOT_PEERS = {"reactor", "reactor-busypoll", "nginx", "threaded"}  # left out of "best Python peer"


@dataclass
class RunRecord:
    """One server under one wrk workload."""

    server: str
    workload: str
    result: WrkResult | None = None
    rss_kib: int = 0
    cpu_us: float = 0.0  # server CPU (user + system, all processes) per request
    error: str | None = None
    round_rps: list[float] = field(default_factory=list)  # every measured run, in order


@dataclass
class ServerRecord:
    """What happened to one server."""

    name: str
    description: str
    access_log: str
    status: str = "not started"
    port: int = 0
    probe: str = ""
    page_gzip: bool | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Report:
    """Everything one ``python -m bench`` run produced."""

    started: datetime
    title_suffix: str
    settings: dict[str, str]
    machine: dict[str, str]
    versions: dict[str, str]
    workloads: list[Workload]
    servers: dict[str, ServerRecord] = field(default_factory=dict)
    runs: list[RunRecord] = field(default_factory=list)
    idle: dict[str, IdleResult | str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    # `python -m bench.hotpath` variants: (exact command, its one-line result)
    hotpath: list[tuple[str, str]] = field(default_factory=list)
    plot: str = ""  # the PNG of req/s per server and workload, relative to the report

    def run_for(self, workload: str, server: str) -> RunRecord | None:
        return next((r for r in self.runs if r.workload == workload and r.server == server),
                    None)


# --- machine info ----------------------------------------------------------------------

def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "?"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def machine_info() -> dict[str, str]:
    """nproc, CPU, kernel, Python, load average, git commit."""
    commit = _first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = _first_line(["git", "--no-optional-locks", "-C", str(ROOT), "status", "--porcelain",
                         "--untracked-files=no"])
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu_model(),
        "kernel": platform.release(),
        "os": _first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "python (reactor, threaded)": sys.version.split()[0],
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "git commit": commit + (" (work tree has changes)" if dirty not in ("", "?") else ""),
    }


# --- formatting helpers ----------------------------------------------------------------

def fmt_rps(value: float) -> str:
    return f"{value:,.0f}"


def fmt_ms(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if value >= 1 else f"{value:.3f}"


def fmt_mib(kib: int) -> str:
    return f"{kib / 1024:.1f}" if kib else "?"


def fmt_ratio(num: float | None, den: float | None) -> str:
    if not num or not den:
        return "n/a"
    return f"{num / den:.2f}x"


def table(headers: list[str], rows: list[list[str]], numeric: bool = False) -> str:
    """A GitHub markdown table; with ``numeric``, columns after the first align right."""
    align = ["---:" if i and numeric else "---" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# --- sections ----------------------------------------------------------------------------

def workload_table(report: Report, workload: Workload) -> str:
    """One row per server that ran ``workload``, fastest first."""
    runs = [r for r in report.runs if r.workload == workload.name]
    if not runs:
        return "_no server ran this workload_"
    reactor = report.run_for(workload.name, REACTOR)
    reactor_rps = reactor.result.rps if reactor and reactor.result else None
    ok = sorted((r for r in runs if r.result), key=lambda r: -r.result.rps)
    headers = ["server", "req/s", "p50 ms", "p99 ms", "CPU µs/req", "RSS MiB", "errors",
               "reactor/peer"]
    rows = [
        [r.server, fmt_rps(r.result.rps), fmt_ms(r.result.p50_ms), fmt_ms(r.result.p99_ms),
         f"{r.cpu_us:.1f}" if r.cpu_us else "", fmt_mib(r.rss_kib), r.result.errors_text(),
         fmt_ratio(reactor_rps, r.result.rps)]
        for r in ok
    ]
    if any(len(r.round_rps) > 1 for r in ok):
        headers.append("every run, req/s")  # best-of-N: the spread says how noisy it was
        for row, r in zip(rows, ok, strict=True):
            row.append(" / ".join(fmt_rps(v) for v in r.round_rps))
    rows += [[r.server, "failed", "", "", "", "", (r.error or "")[:120], ""]
             + [""] * (len(headers) - 8) for r in runs if not r.result]
    if workload.needs == "page":
        # Not every server compresses the page: say which did, and the wire size.
        headers += ["gzip", "KB/response"]
        by_name = {r.server: r for r in runs}
        for row in rows:
            rec, run = report.servers.get(row[0]), by_name[row[0]]
            gz = {True: "yes", False: "no", None: "?"}[rec.page_gzip if rec else None]
            res = run.result
            row += [gz, f"{res.bytes / res.requests / 1000:.1f}" if res and res.requests else ""]
    return table(headers, rows, numeric=True)


def best_python_peer(report: Report, workload: str) -> RunRecord | None:
    """The fastest Python peer (a third-party server from bench/.venv) on ``workload``."""
    runs = [r for r in report.runs if r.workload == workload and r.result
            and r.server not in NOT_PEERS]
    return max(runs, key=lambda r: r.result.rps, default=None)


def summary_table(report: Report) -> str:
    """Per workload: reactor against the best Python peer, nginx and the threaded server."""
    rows = []
    for w in report.workloads:
        if w.kind != "wrk":
            continue
        reactor = report.run_for(w.name, REACTOR)
        best = best_python_peer(report, w.name)
        nginx = report.run_for(w.name, "nginx")
        threaded = report.run_for(w.name, "threaded")

        def rps(rec: RunRecord | None) -> float | None:
            return rec.result.rps if rec and rec.result else None

        rows.append([
            w.name,
            fmt_rps(rps(reactor)) if rps(reactor) else "-",
            f"{best.server} {fmt_rps(best.result.rps)}" if best else "-",
            fmt_ratio(rps(reactor), rps(best)),
            fmt_ratio(rps(reactor), rps(nginx)),
            fmt_ratio(rps(reactor), rps(threaded)),
        ])
    return table(["workload", "reactor req/s", "best Python peer req/s", "reactor/best Python",
                  "reactor/nginx", "reactor/threaded"], rows, numeric=True)


def caveats(report: Report) -> list[str]:
    """Warnings a reader needs before trusting a ratio."""
    notes = []
    reactor = report.servers.get(REACTOR)
    peers_gzip = [s.name for s in report.servers.values()
                  if s.name != REACTOR and s.page_gzip]
    if reactor and reactor.page_gzip is False and peers_gzip:
        notes.append("page100k: reactor sent the page uncompressed (it serves /files/ as "
                     "application/octet-stream) while the peers gzip it, so that ratio compares "
                     "different work (see the gzip and KB/response columns).")
    trimmed = [w.name for w in report.workloads if w.kind == "wrk" and not w.every_server]
    if trimmed and any(n.startswith("Python peers trimmed") for n in report.notes):
        notes.append("'Best Python peer' is the fastest Python peer that ran the workload; by "
                     f"default {', '.join(trimmed)} run only the peer fastest on echo50 "
                     "(see Notes).")
    notes.append("pipeline16 latencies are per batch of 16 requests (wrk measures a batch).")
    return notes


def idle_table(report: Report) -> str:
    rows = []
    for name, res in report.idle.items():
        if isinstance(res, str):
            rows.append([name, "failed", "", "", "", "", "", res[:120]])
            continue
        rows.append([
            name, f"{res.opened:,}/{res.target:,}", f"{res.still_open:,}",
            f"{res.open_seconds:.1f}",
            f"{fmt_mib(res.rss_before_kib)} -> {fmt_mib(res.rss_after_kib)}",
            f"{res.kib_per_conn:.1f}",
            f"{fmt_ms(res.p50_ms)} / {fmt_ms(res.p99_ms)}" if res.samples > res.sample_errors
            else "no answer",
            str(res.open_errors + res.sample_errors),
        ])
    return table(["server", "opened", "still open at end", "open s", "RSS MiB before -> after",
                  "KiB/conn", "fresh conn p50 / p99 ms", "errors"], rows, numeric=True)


def servers_table(report: Report) -> str:
    rows = [[s.name, s.description, s.access_log, s.status, s.probe,
             {True: "yes", False: "no", None: "?"}[s.page_gzip]]
            for s in report.servers.values()]
    return table(["server", "what", "access log", "status", "probe", "page gzip"], rows)


def render(report: Report) -> str:
    """The whole markdown report."""
    when = report.started.strftime("%Y-%m-%d %H:%M")
    parts = [f"# reactor benchmark, {when}{report.title_suffix}", ""]
    parts += ["## Machine", "", table(["", ""], [[k, v] for k, v in report.machine.items()]), ""]
    parts += ["## Versions", "",
              table(["component", "version"], [[k, v] for k, v in report.versions.items()]), ""]
    parts += ["## Settings", "",
              table(["setting", "value"], [[k, v] for k, v in report.settings.items()]), ""]
    parts += ["## Servers", "", servers_table(report), ""]
    for note in (n for s in report.servers.values() for n in s.notes):
        parts.append(f"- {note}")
    parts += ["", "## Summary", "",
              "Ratios are requests/s of reactor divided by the peer's (above 1: reactor faster). "
              "Python peers are the third-party servers (uvicorn, aiohttp, gunicorn, waitress, "
              "tornado, twisted); the threaded baseline has its own column.", "",
              summary_table(report), ""]
    parts += [f"- {n}" for n in caveats(report)] + [""]
    if report.plot:
        parts += [f"![req/s per server and workload]({report.plot})", ""]
    if report.hotpath:
        parts += ["## bench.hotpath: Python CPU per /echo request, no sockets", "",
                  table(["command", "result"], [[f"`{c}`", r] for c, r in report.hotpath]),
                  ""]
    for w in report.workloads:
        parts += [f"## {w.name}: {w.title}", ""]
        parts += [idle_table(report) if w.kind == "idle" else workload_table(report, w), ""]
    if report.notes:
        parts += ["## Notes", ""] + [f"- {n}" for n in report.notes] + [""]
    parts += ["## Commands run", "", "```", *report.commands, "```", ""]
    parts.append(f"Total run time: {report.elapsed_s:.0f} s.")
    return "\n".join(parts) + "\n"


def to_json(report: Report) -> str:
    """The raw records, for later comparison between runs."""
    data = asdict(report)
    data["started"] = report.started.isoformat(timespec="seconds")
    for run in data["runs"]:
        if run["result"] and run["result"]["duration_s"]:
            run["result"]["rps"] = round(run["result"]["requests"] / run["result"]["duration_s"], 1)
    return json.dumps(data, indent=1, default=str)


def write(report: Report, results_dir: Path) -> Path:
    """Write ``YYYY-MM-DD-HHMM.md`` (+ ``.json``) and ``latest.md``; return the .md path."""
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = report.started.strftime("%Y-%m-%d-%H%M")
    text = render(report)
    path = results_dir / f"{stem}.md"
    path.write_text(text)
    if report.plot:  # latest.md shows the same picture
        text = text.replace(f"]({report.plot})", "](latest.png)")
    (results_dir / f"{stem}.json").write_text(to_json(report))
    (results_dir / "latest.md").write_text(text)
    return path
