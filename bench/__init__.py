"""reactor's benchmark harness: reactor against Python peers and nginx, driven by wrk.

``python -m bench`` (``make bench``) installs what it needs (wrk and nginx through
apt, the peer servers into ``bench/.venv``), starts each server as one process pinned
to CPU 0, loads it with ``wrk`` pinned to CPU 1, and writes a markdown report to
``bench/results/``. See ``python -m bench --help``.

Modules: ``peers_setup`` (install), ``content`` (the files served), ``procs``
(process groups, RSS, cleanup), ``servers`` (how each server starts and is probed),
``workloads`` and ``wrk`` (load generation), ``idle`` (10k idle connections),
``report`` (markdown), ``cli`` (orchestration).
"""

from __future__ import annotations

from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
WORK_DIR = BENCH_DIR / ".work"
RESULTS_DIR = BENCH_DIR / "results"
APPS_DIR = BENCH_DIR / "apps"
LUA_DIR = BENCH_DIR / "lua"
VENV_DIR = BENCH_DIR / ".venv"

HOST = "127.0.0.1"
SERVER_CPU = "0"
CLIENT_CPU = "1"
