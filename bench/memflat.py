"""RSS of reactor while many clients download one large file at once (sendfile, flat memory).

`python -m bench.memflat [--size-gib 2] [--clients 50] [--gzip]` creates a sparse file of that
size under bench/.work, starts `reactor serve` on 127.0.0.1 with it as a document root, starts
the clients (curl, discarding the body), samples the server's VmRSS every 0.5 s until they
finish, and prints a summary. `--gzip` asks for `Accept-Encoding: gzip` (a .txt file, so the
body is gzipped as it is sent: the streamed path) instead of the sendfile path.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

from bench.procs import rss_kib, start_reactor, stop

ROOT = Path(__file__).resolve().parent
WORK = ROOT / ".work" / "memflat"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memflat")
    parser.add_argument("--size-gib", type=float, default=2.0)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--gzip", action="store_true")
    args = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    name = "big.txt" if args.gzip else "big.bin"
    path = WORK / name
    size = int(args.size_gib * (1 << 30))
    with open(path, "wb") as file:  # sparse: no disk used, reads return zeros
        file.truncate(size)
    server, port = start_reactor({"REACTOR_STATIC_ROOT": str(WORK)})
    try:
        base = rss_kib(server.pid)
        command = ["curl", "-s", "-o", "/dev/null", "-w", "%{size_download}\n"]
        if args.gzip:
            command += ["-H", "Accept-Encoding: gzip"]
        url = f"http://127.0.0.1:{port}/{name}"
        started = time.monotonic()
        clients = [subprocess.Popen([*command, url], stdout=subprocess.PIPE)
                   for _ in range(args.clients)]
        samples = []
        while any(client.poll() is None for client in clients):
            samples.append(rss_kib(server.pid))
            time.sleep(0.5)
        elapsed = time.monotonic() - started
        sizes = [int(client.stdout.read() or 0) for client in clients]  # type: ignore[union-attr]
        print(json.dumps({
            "file_bytes": size, "clients": args.clients, "gzip": args.gzip,
            "seconds": round(elapsed, 1), "rss_idle_mib": round(base / 1024, 1),
            "rss_max_mib": round(max(samples, default=base) / 1024, 1),
            "rss_samples": len(samples),
            "downloaded_each": sorted(set(sizes)),
            "gbit_per_s": round(sum(sizes) * 8 / elapsed / 1e9, 1),
        }))
    finally:
        stop(server, grace=30.0)
        path.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
