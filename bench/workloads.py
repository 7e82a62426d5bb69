"""The workloads: what each wrk run requests, and which servers take part.

``echo50`` is the headline and runs every server. The others run reactor, the
threaded baseline and nginx, plus only the Python peer that was fastest on ``echo50``
(the runner-up also takes ``idle10k``), unless ``--all-peers`` is given: that keeps
the default run near 13 minutes on a 2-core machine (see ``bench/cli.py``).
``idle10k`` is not a wrk run; see ``bench/idle.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.content import BIG_FILE, PAGE_FILE


@dataclass(frozen=True)
class Workload:
    """One measured scenario."""

    name: str
    title: str
    path: str
    connections: int = 50
    headers: tuple[str, ...] = ()
    script: str = "report.lua"
    script_args: tuple[str, ...] = ()
    every_server: bool = False  # False: Python peers are trimmed (unless --all-peers)
    kind: str = "wrk"  # "wrk" or "idle"

    @property
    def needs(self) -> str:
        """Which probe must pass first: "echo", "file" or "page"."""
        if self.path.endswith(BIG_FILE):
            return "file"
        if self.path.endswith(PAGE_FILE):
            return "page"
        return "echo"


ECHO = "/echo/abc"

WORKLOADS: tuple[Workload, ...] = (
    Workload("echo1", "GET /echo/abc, 1 keep-alive connection", ECHO, connections=1),
    Workload("echo50", "GET /echo/abc, 50 keep-alive connections", ECHO, every_server=True),
    Workload("echo1000", "GET /echo/abc, 1,000 keep-alive connections", ECHO, connections=1000),
    Workload("close50", "GET /echo/abc, 50 connections, `Connection: close` (one request each)",
             ECHO, headers=("Connection: close",)),
    Workload("pipeline16", "GET /echo/abc, 50 connections, 16 pipelined requests per write",
             ECHO, script="pipeline.lua", script_args=("16",)),
    Workload("file1m", f"GET /files/{BIG_FILE} (1 MiB static file), 50 connections",
             f"/files/{BIG_FILE}"),
    Workload("page100k", f"GET /files/{PAGE_FILE} (~100 KB HTML), `Accept-Encoding: gzip`, "
             "50 connections", f"/files/{PAGE_FILE}", headers=("Accept-Encoding: gzip",)),
    Workload("idle10k", "10,000 idle keep-alive connections held open: RSS per connection and "
             "latency of fresh connections meanwhile", ECHO, connections=10_000, kind="idle"),
)

BY_NAME = {w.name: w for w in WORKLOADS}


def select_workloads(names: str | None) -> list[Workload]:
    """Workloads named in a comma-separated list (all when None), in canonical order."""
    if not names:
        return list(WORKLOADS)
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in BY_NAME]
    if unknown:
        raise ValueError(f"unknown workload(s) {unknown}; known: {', '.join(BY_NAME)}")
    return [w for w in WORKLOADS if w.name in wanted]
