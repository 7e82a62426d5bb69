"""The files every server serves, generated deterministically into ``bench/.work/www``.

* ``1m.bin``: 1 MiB of seeded pseudo-random bytes (incompressible);
* ``page.html``: a ~100 KB HTML page of seeded pseudo-random table rows (compresses
  about like real markup).

Files are rewritten only when their content differs, so repeated runs are cheap.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

from bench import WORK_DIR

WWW_DIR = WORK_DIR / "www"
BIG_FILE = "1m.bin"
PAGE_FILE = "page.html"
BIG_SIZE = 1 << 20
PAGE_TARGET = 100_000

WORDS = (
    "reactor", "selector", "socket", "buffer", "header", "request", "response", "keep-alive",
    "pipeline", "chunk", "gzip", "latency", "throughput", "worker", "thread", "process",
    "kernel", "epoll", "accept", "listen", "close", "status", "content", "length", "encoding",
    "vary", "cache", "server", "client", "python", "benchmark",
)


@dataclass(frozen=True)
class Content:
    """Paths and digests of the served files."""

    www: Path
    big: bytes
    page: bytes

    @property
    def big_sha256(self) -> str:
        return hashlib.sha256(self.big).hexdigest()

    @property
    def page_sha256(self) -> str:
        return hashlib.sha256(self.page).hexdigest()


def big_bytes() -> bytes:
    return random.Random(1).randbytes(BIG_SIZE)


def page_bytes(target: int = PAGE_TARGET) -> bytes:
    """An HTML page of table rows, grown until it reaches ``target`` bytes."""
    rng = random.Random(2)
    head = "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>bench page</title>"
    head += "</head><body><h1>Benchmark page</h1><table>\n"
    rows: list[str] = []
    size = len(head)
    i = 0
    while size < target - 30:
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9)))
        row = f'<tr class="r{i % 7}"><td>{i}</td><td>{words}</td><td>{rng.random():.6f}</td></tr>\n'
        rows.append(row)
        size += len(row)
        i += 1
    return (head + "".join(rows) + "</table></body></html>\n").encode()


def _write_if_changed(path: Path, data: bytes) -> None:
    if path.exists() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return
    path.write_bytes(data)


def ensure_content(www: Path = WWW_DIR) -> Content:
    """Create (or refresh) the served files and return them."""
    www.mkdir(parents=True, exist_ok=True)
    content = Content(www=www, big=big_bytes(), page=page_bytes())
    _write_if_changed(www / BIG_FILE, content.big)
    _write_if_changed(www / PAGE_FILE, content.page)
    return content
