"""The benchmark's picture: req/s per server, grouped by workload, as a PNG.

Runs in the peers' venv (``bench/.venv``, which has matplotlib):
``bench/.venv/bin/python -m bench.plot RESULTS.json OUT.png``. The harness calls it after a
run (``bench/cli.py``); a missing matplotlib only costs the picture, never the report.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# Fixed colours per server, so runs compare at a glance.
COLOURS = {"reactor": "#d62728", "reactor-busypoll": "#ff9896", "nginx": "#2ca02c",
           "threaded": "#7f7f7f", "uvicorn": "#1f77b4", "uvicorn-nolog": "#9ecae1",
           "aiohttp": "#ff7f0e",
           "gunicorn": "#8c564b", "waitress": "#e377c2", "tornado": "#bcbd22",
           "twisted": "#17becf"}


def series(data: dict[str, Any]) -> tuple[list[str], dict[str, dict[str, float]]]:
    """(workloads in report order, {server: {workload: req/s}}) from the results JSON."""
    workloads = [w["name"] for w in data["workloads"] if w.get("kind", "wrk") == "wrk"]
    rps: dict[str, dict[str, float]] = {}
    for run in data["runs"]:
        result = run.get("result")
        if result and result.get("duration_s"):
            rps.setdefault(run["server"], {})[run["workload"]] = (
                result["requests"] / result["duration_s"])
    ran = [w for w in workloads if any(w in by for by in rps.values())]
    return ran, rps


def plot(results: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(results.read_text())
    workloads, rps = series(data)
    servers = [name for name in data["servers"] if name in rps]
    fig, axes = plt.subplots(1, len(workloads), figsize=(max(4.0, 2.6 * len(workloads)), 4.2),
                             squeeze=False)
    for ax, workload in zip(axes[0], workloads, strict=True):
        names = [s for s in servers if workload in rps[s]]
        values = [rps[s][workload] for s in names]
        bars = ax.bar(range(len(names)), values,
                      color=[COLOURS.get(s, "#aaaaaa") for s in names])
        ax.set_title(workload, fontsize=10)
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
        for bar, value in zip(bars, values, strict=True):
            ax.annotate(f"{value / 1000:.1f}k", (bar.get_x() + bar.get_width() / 2, value),
                        ha="center", va="bottom", fontsize=6)
    axes[0][0].set_ylabel("requests/s")
    fig.suptitle(f"reactor benchmark {data['started']} (req/s, higher is better)", fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m bench.plot RESULTS.json OUT.png", file=sys.stderr)
        return 2
    plot(Path(args[0]), Path(args[1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
