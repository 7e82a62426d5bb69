"""Server CPU and memory for a body of 200,000 one-byte chunks versus the same wire bytes as one.

`python -m bench.chunkflood [--chunks 200000] [--rounds 5]` starts `reactor serve` (port 0,
access log off, a scratch files directory, `limits.max_body_bytes` at 100 MiB) and sends, over
a real socket, `PUT /files/x` with `Transfer-Encoding: chunked`: once as N times `1\\r\\na\\r\\n`
and the last chunk, once as ONE chunk whose framing makes the body the same number of bytes on
the wire. It prints the server's CPU seconds for each (summed over all its threads, from
/proc/PID/task/*/schedstat; median of `--rounds` runs), their ratio (of the medians, and of
the best runs), and the server's peak RSS growth during the flood (VmHWM after resetting it
through /proc/PID/clear_refs, minus VmRSS before). Targets from issue 9: ratio <= 20 and
<= 30 MB growth.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.procs import start_reactor, status_kib, stop, thread_cpu_s

MAX_BODY_BYTES = 100 * 1024 * 1024
TIMEOUT_S = 120.0


def reset_peak_rss(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # 5: reset VmHWM to the current RSS
    except OSError:
        return False
    return True


def flood_body(chunks: int) -> bytes:
    return b"1\r\na\r\n" * chunks + b"0\r\n\r\n"


def single_body(wire_bytes: int) -> bytes:
    """One chunk (and the last chunk) taking exactly `wire_bytes` bytes on the wire."""
    last = b"0\r\n\r\n"
    size = wire_bytes - len(last) - 4
    while len(b"%x" % size) + 4 + size + len(last) > wire_bytes:
        size -= 1
    body = b"%x\r\n" % size + b"a" * size + b"\r\n" + last
    assert len(body) == wire_bytes, (len(body), wire_bytes)
    return body


def put(port: int, name: str, body: bytes) -> None:
    head = (b"PUT /files/%s HTTP/1.1\r\nHost: bench\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n" % name.encode())
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as sock:
        sock.sendall(head + body)
        response = b""
        while data := sock.recv(65536):
            response += data
    status = response.split(b" ", 2)[1:2]
    if status not in ([b"201"], [b"204"]):
        raise SystemExit(f"unexpected answer: {response[:200]!r}")


def measure(pid: int, port: int, name: str, body: bytes) -> tuple[float, int]:
    """(server CPU seconds, peak RSS growth in KiB) for one PUT of `body`."""
    resettable = reset_peak_rss(pid)
    rss_before = status_kib(pid, "VmRSS")
    before = thread_cpu_s(pid)
    put(port, name, body)
    time.sleep(0.05)  # the loop finishes logging and closing after the answer
    spent = thread_cpu_s(pid) - before
    peak = status_kib(pid, "VmHWM") if resettable else status_kib(pid, "VmRSS")
    return spent, max(0, peak - rss_before)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chunkflood")
    parser.add_argument("--chunks", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    flood = flood_body(args.chunks)
    single = single_body(len(flood))
    directory = Path(tempfile.mkdtemp(prefix="reactor-chunkflood-"))
    server, port = start_reactor({"REACTOR_FILES_DIRECTORY": str(directory),
                                  "REACTOR_LIMITS_MAX_BODY_BYTES": str(MAX_BODY_BYTES)})
    try:
        put(port, "warm", flood_body(1000))  # imports and first-use caches, not measured
        put(port, "warm", single_body(len(flood_body(1000))))
        single_runs, flood_runs = [], []
        for _ in range(args.rounds):
            single_runs.append(measure(server.pid, port, "single", single))
            flood_runs.append(measure(server.pid, port, "flood", flood))
        if (directory / "flood").read_bytes() != b"a" * args.chunks:
            raise SystemExit("the flooded upload was stored wrong")
        single_cpu = statistics.median(cpu for cpu, _ in single_runs)
        flood_cpu = statistics.median(cpu for cpu, _ in flood_runs)
        best_ratio = min(cpu for cpu, _ in flood_runs) / min(cpu for cpu, _ in single_runs)
        growth_mib = max(growth for _, growth in flood_runs) / 1024
        print(f"wire bytes per body:          {len(flood):,}")
        print(f"one chunk:                    {single_cpu:.4f} s server CPU (median)")
        print(f"{args.chunks:,} one-byte chunks: {flood_cpu:.4f} s server CPU (median)")
        print(f"ratio:                        {flood_cpu / single_cpu:.1f}x of the medians, "
              f"{best_ratio:.1f}x of the bests  (target <= 20x)")
        print(f"peak RSS growth (flood):      {growth_mib:.1f} MiB  (target <= 30 MB)")
        print(json.dumps({
            "chunks": args.chunks, "wire_bytes": len(flood), "rounds": args.rounds,
            "single_cpu_s": [round(cpu, 4) for cpu, _ in single_runs],
            "flood_cpu_s": [round(cpu, 4) for cpu, _ in flood_runs],
            "ratio_median": round(flood_cpu / single_cpu, 1),
            "ratio_best": round(best_ratio, 1),
            "flood_peak_rss_growth_mib": round(growth_mib, 1),
        }))
    finally:
        stop(server, grace=10.0)
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
