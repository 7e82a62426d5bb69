"""Server CPU and latency at a steady request rate over one keep-alive connection.

`python -m bench.steady [--rate 1000] [--seconds 5] [--rounds 3] [--busy-poll-us 0,100]`
starts `reactor serve` (port 0, access log off) once per `server.busy_poll_us` value, pins its
threads to CPU 0 and this client to CPU 1, and sends `GET /echo/abc` at `--rate` requests per
second over one keep-alive connection (each request waits for its answer, then the client
sleeps until the next one is due). Per round it prints the server's CPU as a share of a core
(all its threads, from /proc/PID/task/*/schedstat: nanoseconds, not scheduler ticks) and the
client-side p50/p99 latency. It answers one question: what busy polling costs a server whose
traffic leaves gaps longer than the window (the adaptive window should shrink to nothing).
"""

from __future__ import annotations

import argparse
import os
import socket
import time
from pathlib import Path

from bench.procs import start_reactor, stop, thread_cpu_s

REQUEST = b"GET /echo/abc HTTP/1.1\r\nHost: bench\r\n\r\n"
SERVER_CPU, CLIENT_CPU = 0, 1


def pin(pid: int, cpu: int) -> None:
    """Every thread of `pid` on `cpu` (when the machine has it)."""
    if cpu >= (os.cpu_count() or 1):
        return
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), {cpu})
        except OSError:
            continue  # a thread that just exited


def one_round(port: int, server_pid: int, rate: float, seconds: float) -> tuple[float, float,
                                                                                 float]:
    """(server CPU % of a core, p50 µs, p99 µs) of one round."""
    latencies: list[float] = []
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cpu_before = thread_cpu_s(server_pid)
        start = time.monotonic()
        sent = 0
        while time.monotonic() - start < seconds:
            began = time.perf_counter()
            client.sendall(REQUEST)
            answer = b""
            while not answer.endswith(b"\r\n\r\nabc"):
                chunk = client.recv(4096)
                if not chunk:
                    raise SystemExit("the server closed the connection")
                answer += chunk
            latencies.append(time.perf_counter() - began)
            sent += 1
            time.sleep(max(0.0, start + sent / rate - time.monotonic()))
        elapsed = time.monotonic() - start
        cpu = thread_cpu_s(server_pid) - cpu_before
    latencies.sort()
    return (100.0 * cpu / elapsed, latencies[len(latencies) // 2] * 1e6,
            latencies[int(len(latencies) * 0.99)] * 1e6)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.steady", description=__doc__)
    parser.add_argument("--rate", type=float, default=1000.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=5.0, help="per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--busy-poll-us", default="0,100",
                        help="comma-separated server.busy_poll_us values, one server each")
    args = parser.parse_args(argv)
    if (os.cpu_count() or 1) > CLIENT_CPU:
        os.sched_setaffinity(0, {CLIENT_CPU})
    for value in (int(v) for v in args.busy_poll_us.split(",")):
        server, port = start_reactor({"REACTOR_SERVER_BUSY_POLL_US": str(value)})
        try:
            pin(server.pid, SERVER_CPU)
            one_round(port, server.pid, args.rate, 1.0)  # warm-up
            for _ in range(args.rounds):
                cpu, p50, p99 = one_round(port, server.pid, args.rate, args.seconds)
                print(f"busy_poll_us={value:<6} {args.rate:,.0f} req/s: server CPU "
                      f"{cpu:5.2f}% of a core, latency p50 {p50:.0f} µs p99 {p99:.0f} µs",
                      flush=True)
        finally:
            stop(server)


if __name__ == "__main__":
    main()
