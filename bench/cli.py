"""``python -m bench``: plan the runs, start each server, run the workloads, write the report.

Servers run one at a time. For each: start it (pinned to CPU 0), check its answers,
then per workload a warm-up wrk run and a measured one (wrk pinned to CPU 1), RSS
sampled right after; ``idle10k`` last; then stop it. Every process is stopped at the
end, also on error or Ctrl-C.

To fit the default run in 10 minutes, the Python peers go in two passes: all of them
run ``echo50``; then the fastest there runs the other workloads and the runner-up
``idle10k``. ``--all-peers`` or ``--only`` turns this off.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bench import (
    CLIENT_CPU,
    HOST,
    RESULTS_DIR,
    ROOT,
    SERVER_CPU,
    VENV_DIR,
    WORK_DIR,
    procs,
    report,
)
from bench.content import Content, ensure_content
from bench.idle import run_idle
from bench.peers_setup import SetupError, SetupInfo, setup
from bench.probe import probe
from bench.report import Report, RunRecord, ServerRecord
from bench.servers import BY_NAME, SERVERS, Running, ServerError, ServerSpec, start
from bench.workloads import WORKLOADS, Workload, select_workloads
from bench.wrk import WrkError, run_wrk, wrk_command

STARTUP_ESTIMATE_S = 2.0
IDLE_ESTIMATE_S = 12.0


@dataclass
class Job:
    """One start of one server, and the workloads it runs in that start."""

    spec: ServerSpec
    workloads: list[Workload]


def estimate_s(jobs: list[Job], duration: float, warmup: float, rounds: int = 1) -> float:
    total = 0.0
    for job in jobs:
        total += STARTUP_ESTIMATE_S
        for w in job.workloads:
            total += (IDLE_ESTIMATE_S if w.kind == "idle"
                      else (duration + 0.4) * rounds + warmup)
    return total


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Benchmark reactor against Python peers and nginx.")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 3 s per workload, 1 s warm-up")
    parser.add_argument("--duration", type=float, help="seconds per measured run (default 10)")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up per run (default 2)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measured runs per workload, the best kept (default 1)")
    parser.add_argument("--only", help="comma-separated servers: " + ",".join(BY_NAME))
    parser.add_argument("--workloads", help="comma-separated workloads (default all): "
                        + ",".join(w.name for w in WORKLOADS))
    parser.add_argument("--all-peers", action="store_true",
                        help="run every Python peer on every workload (about 15 min)")
    parser.add_argument("--idle-conns", type=int, default=10_000,
                        help="connections held by idle10k (default 10000)")
    parser.add_argument("--no-setup", action="store_true",
                        help="skip apt/pip installs; use what is there")
    parser.add_argument("--no-hotpath", action="store_true",
                        help="skip the `python -m bench.hotpath` figures")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR,
                        help="where to write the report (default bench/results)")
    args = parser.parse_args(argv)
    if args.duration is None:
        args.duration = 3.0 if args.quick else 10.0
    if args.warmup is None:
        args.warmup = 1.0 if args.quick else 2.0
    return args


def select_servers(only: str | None) -> list[ServerSpec]:
    if not only:
        return list(SERVERS)
    wanted = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in BY_NAME]
    if unknown:
        raise ValueError(f"unknown server(s) {unknown}; known: {', '.join(BY_NAME)}")
    return [s for s in SERVERS if s.name in wanted]


def first_pass(servers: list[ServerSpec], workloads: list[Workload], info: SetupInfo,
               everything: bool) -> tuple[list[Job], list[str]]:
    """Jobs before the peers are ranked: non-peers (and, with ``everything``, all
    servers) get every workload, Python peers only the ``every_server`` ones."""
    jobs, notes = [], []
    for spec in servers:
        if spec.needs_nginx and not info.have_nginx:
            notes.append(f"{spec.name}: skipped, nginx is not installed")
        elif spec.peer and not info.venv_ok:
            notes.append(f"{spec.name}: skipped, bench/.venv is not ready")
        elif spec.only:
            if chosen := [w for w in workloads if w.name in spec.only]:
                jobs.append(Job(spec, chosen))
        elif everything or not spec.peer:
            jobs.append(Job(spec, list(workloads)))
        elif chosen := [w for w in workloads if w.every_server]:
            jobs.append(Job(spec, chosen))
    return jobs, notes


def rank_peers(peers: list[ServerSpec], rep: Report) -> list[ServerSpec]:
    """Peers fastest first on the ``every_server`` workloads (SERVERS order breaks ties,
    and stands alone when none of them ran)."""
    def score(spec: ServerSpec) -> float:
        runs = [r for r in rep.runs if r.server == spec.name and r.result]
        return -sum(r.result.rps for r in runs)

    return sorted(peers, key=score)


def second_pass(ranked: list[ServerSpec], workloads: list[Workload]) -> list[Job]:
    """The fastest peer runs the remaining workloads; the runner-up runs idle10k too."""
    rest = [w for w in workloads if not w.every_server]
    jobs = []
    if ranked and rest:
        jobs.append(Job(ranked[0], rest))
    idle = [w for w in rest if w.kind == "idle"]
    if len(ranked) > 1 and idle:
        jobs.append(Job(ranked[1], idle))
    return jobs


def trimmed_note(ranked: list[ServerSpec], jobs: list[Job], workloads: list[Workload]) -> str:
    ran = {w.name for w in workloads if w.every_server}
    how = f"by {', '.join(sorted(ran))} in this run" if ran else "by default order (no echo50)"
    names = ", ".join(f"{j.spec.name} ({', '.join(w.name for w in j.workloads)})" for j in jobs)
    return (f"Python peers trimmed to keep the default run short: all ran "
            f"{', '.join(sorted(ran)) or 'nothing'}; ranked {how}, then only {names or 'none'} "
            f"ran more. `--all-peers` (about 15 min) or `--only` runs every workload.")


def run_workload(running: Running, workload: Workload, args: argparse.Namespace,
                 wrk_log: Path) -> RunRecord:
    """Warm up, measure (`args.rounds` times, the run with the most requests/s kept, as
    the issue's own numbers were taken), sample RSS."""
    record = RunRecord(server=running.spec.name, workload=workload.name)
    url = f"http://{HOST}:{running.port}{workload.path}"
    try:
        if args.warmup > 0:
            run_wrk(wrk_command(url, workload, args.warmup), args.warmup, wrk_log)
        for _ in range(max(1, args.rounds)):
            cpu_before = running.cpu_s()
            result = run_wrk(wrk_command(url, workload, args.duration), args.duration,
                             wrk_log)
            cpu_us = ((running.cpu_s() - cpu_before) * 1e6 / result.requests
                      if result.requests else 0.0)
            record.round_rps.append(result.rps)
            if record.result is None or result.rps > record.result.rps:
                record.result, record.cpu_us = result, cpu_us
        record.rss_kib = running.rss_kib()
    except WrkError as exc:
        record.error = str(exc)
    if running.proc.poll() is not None:
        record.error = (record.error or "") + f" server exited with {running.proc.returncode}"
    return record


TIME_WAIT_SETTLE_S = 65.0  # a little over Linux's fixed 60 s TIME_WAIT
_TIME_WAIT = "06"  # the state column of /proc/net/tcp


def time_wait_sockets(port: int) -> int:
    """TCP sockets in TIME_WAIT with `port` at either end (the server's or the client's)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if (fields[3] == _TIME_WAIT
                    and port in (int(fields[1].rsplit(":", 1)[1], 16),
                                 int(fields[2].rsplit(":", 1)[1], 16))):
                count += 1
    return count


def settle_time_wait(port: int, limit_s: float = TIME_WAIT_SETTLE_S) -> float:
    """After a `Connection: close` run: wait for its TIME_WAIT sockets to expire (tens of
    thousands of them slow every later run on loopback, the 1 MiB file most), at most
    `limit_s`. Returns the seconds waited."""
    started = time.monotonic()
    while time_wait_sockets(port) > 100 and time.monotonic() - started < limit_s:
        time.sleep(1.0)
    return time.monotonic() - started


def run_server(spec: ServerSpec, workloads: list[Workload], content: Content,
               args: argparse.Namespace, rep: Report) -> None:
    """Start one server, check it, run its workloads, stop it; results go into ``rep``."""
    rec = rep.servers[spec.name]
    print(f"\n== {spec.name}: starting", flush=True)
    try:
        running = start(spec, content.www)
    except ServerError as exc:
        rec.status = f"did not start: {exc}"[:300]
        print(f"   {rec.status}", flush=True)
        return
    rec.notes += [f"{spec.name}: {n}" for n in running.notes]
    rec.port = running.port
    try:
        checked = probe(running.port, content)
        rec.probe, rec.page_gzip = checked.summary(), checked.page_gzip
        rec.status = "ran"
        print(f"   port {running.port}, probe: {rec.probe}", flush=True)
        for w in workloads:
            if not checked.ok(w.needs):
                rep.runs.append(RunRecord(spec.name, w.name, error=f"probe failed: {w.needs}"))
                continue
            if w.kind == "idle":
                run_idle_workload(running, args, rep)
                continue
            record = run_workload(running, w, args, WORK_DIR / "wrk.log")
            rep.runs.append(record)
            res = record.result
            print(f"   {w.name:<11} " + (f"{res.rps:>10,.0f} req/s  p99 {res.p99_ms:8.2f} ms  "
                  f"errors {res.errors_text()}" if res else f"FAILED {record.error}"), flush=True)
            if running.proc.poll() is not None:
                rec.status = f"died during {w.name}"
                break
            if any(h.lower() == "connection: close" for h in w.headers):
                waited = settle_time_wait(running.port)
                print(f"   (waited {waited:.0f} s for TIME_WAIT sockets to expire)", flush=True)
    finally:
        running.stop()


def run_idle_workload(running: Running, args: argparse.Namespace, rep: Report) -> None:
    name = running.spec.name
    try:
        res = run_idle(running.port, running.rss_kib, target=args.idle_conns)
    except OSError as exc:
        rep.idle[name] = f"{type(exc).__name__}: {exc}"
        print(f"   idle10k     FAILED {exc}", flush=True)
        return
    rep.idle[name] = res
    print(f"   idle10k     {res.opened:,} held ({res.still_open:,} still open), "
          f"{res.kib_per_conn:.1f} KiB/conn, fresh p50 {res.p50_ms:.2f} ms "
          f"p99 {res.p99_ms:.2f} ms, errors {res.open_errors + res.sample_errors}", flush=True)


HOTPATH_VARIANTS = ((), ("--lb", "--metrics"))


def run_hotpath() -> list[tuple[str, str]]:
    """`python -m bench.hotpath` as `reactor serve` runs the app and without the wrappers,
    pinned to the server CPU: (command, result line) each."""
    results = []
    for extra in HOTPATH_VARIANTS:
        argv = ["taskset", "-c", SERVER_CPU, sys.executable, "-m", "bench.hotpath", *extra]
        shown = " ".join(["taskset", "-c", SERVER_CPU, "python", "-m", "bench.hotpath",
                          *extra])
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
        line = (done.stdout.strip().splitlines() or [done.stderr.strip()[-200:]])[-1]
        print(f"   {shown}: {line}", flush=True)
        results.append((shown, line))
    return results


def write_plot(rep: Report, results_dir: Path) -> None:
    """The PNG next to the report (and as latest.png), drawn in the peers' venv."""
    stem = rep.started.strftime("%Y-%m-%d-%H%M")
    python = VENV_DIR / "bin" / "python"
    png = results_dir / f"{stem}.png"
    done = subprocess.run([str(python), "-m", "bench.plot", str(results_dir / f"{stem}.json"),
                           str(png)], cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not png.exists():
        rep.notes.append("no plot: `bench/.venv/bin/python -m bench.plot` failed: "
                         + (done.stderr.strip().splitlines() or ["?"])[-1][:200])
        rep.plot = ""
        report.write(rep, results_dir)
        return
    shutil.copyfile(png, results_dir / "latest.png")


def pin_self() -> None:
    """Run the harness (the idle10k client) on the client CPU, away from the server."""
    cpus = os.sched_getaffinity(0)
    if {int(SERVER_CPU), int(CLIENT_CPU)} <= cpus:
        os.sched_setaffinity(0, {int(CLIENT_CPU)})
    else:
        raise SetupError(f"needs CPUs {SERVER_CPU} and {CLIENT_CPU}; this process may use {cpus}")


def reactor_version() -> str:
    try:
        return importlib.metadata.version("reactor")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def new_report(args: argparse.Namespace, info: SetupInfo, workloads: list[Workload],
               nofile: int) -> Report:
    settings = {
        "duration per run": f"{args.duration:g} s (+ {args.warmup:g} s warm-up run before it)",
        "rounds": f"{max(1, args.rounds)} measured run(s) per workload, the best req/s kept"
                  " (its CPU µs/req with it)",
        "pinning": f"server `taskset -c {SERVER_CPU}`, wrk `taskset -c {CLIENT_CPU}` with -t1",
        "wrk": "one thread, `--timeout 5s`, results from bench/lua/report.lua's done() hook",
        "RSS": "VmRSS summed over the server's process group, right after the measured run",
        "CPU µs/req": "user + system CPU of the server's process group during the measured "
                      "run, divided by the requests wrk completed (steadier than req/s here)",
        "idle10k": f"{args.idle_conns:,} connections, batches of 250, 200 fresh-connection "
                   "requests timed by the Python client",
        "open files limit": str(nofile),
        "after close50": "the harness waits (at most 65 s) until the TIME_WAIT sockets that "
                         "run left on the server's port have expired, so the runs after it do "
                         "not measure them",
    }
    versions = {"reactor": reactor_version(), **info.versions}
    return Report(
        started=datetime.now(),
        title_suffix=" (quick smoke run: numbers are indicative only)" if args.quick else "",
        settings=settings,
        machine=report.machine_info(),
        versions=versions,
        workloads=workloads,
        notes=list(info.notes),
    )


def run(args: argparse.Namespace) -> int:
    begun = time.monotonic()
    servers = select_servers(args.only)
    workloads = select_workloads(args.workloads)
    everything = args.all_peers or bool(args.only)
    pin_self()
    nofile = procs.raise_nofile_limit()
    info = setup(skip_install=args.no_setup)
    content = ensure_content()
    (WORK_DIR / "wrk.log").write_text("")  # raw wrk output of this run only
    jobs, skipped = first_pass(servers, workloads, info, everything)
    peers = [j.spec for j in jobs if j.spec.peer]
    later = [] if everything else second_pass(peers, workloads)
    estimate = estimate_s(jobs + later, args.duration, args.warmup, args.rounds)
    print(f"plan: {len(jobs) + len(later)} server starts, about {estimate / 60:.1f} min",
          flush=True)
    rep = new_report(args, info, workloads, nofile)
    rep.notes += skipped
    if not args.no_hotpath:
        print("\n== bench.hotpath", flush=True)
        rep.hotpath = run_hotpath()
    if nofile < args.idle_conns + 1000:
        rep.notes.append(f"open files limit {nofile} is low for {args.idle_conns} idle conns")
    for spec in servers:
        rep.servers[spec.name] = ServerRecord(spec.name, spec.description, spec.access_log)
        if all(j.spec is not spec for j in jobs):
            rep.servers[spec.name].status = "skipped"
    try:
        for job in jobs:
            run_server(job.spec, job.workloads, content, args, rep)
        if not everything and peers:
            ranked = rank_peers(peers, rep)
            later = second_pass(ranked, workloads)
            rep.notes.append(trimmed_note(ranked, later, workloads))
            for job in later:
                run_server(job.spec, job.workloads, content, args, rep)
    finally:
        rep.commands = list(procs.COMMANDS)
        rep.elapsed_s = time.monotonic() - begun
        rep.machine["load average at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        rep.plot = rep.started.strftime("%Y-%m-%d-%H%M") + ".png"
        path = report.write(rep, args.results)
        write_plot(rep, args.results)
        print(f"\nreport: {path} (and {args.results / 'latest.md'}), "
              f"{rep.elapsed_s:.0f} s", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    procs.install_signal_handlers()
    try:
        return run(args)
    except (SetupError, ValueError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nbench: interrupted; stopping every started process", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
