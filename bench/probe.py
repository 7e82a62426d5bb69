"""Correctness probe run once per server before it is measured.

A server that answers wrongly is not measured on the workloads that depend on that
answer (``Workload.needs``), and the report says why.
"""

from __future__ import annotations

import gzip
import http.client
from dataclasses import dataclass, field

from bench.content import BIG_FILE, PAGE_FILE, Content
from bench.servers import http_get


@dataclass
class ProbeResult:
    """Per check ("echo", "file", "page"): None when fine, else what was wrong."""

    problems: dict[str, str | None] = field(default_factory=dict)
    page_gzip: bool = False
    page_wire_bytes: int = 0

    def ok(self, check: str) -> bool:
        return self.problems.get(check) is None

    def summary(self) -> str:
        bad = [f"{k}: {v}" for k, v in self.problems.items() if v]
        return "; ".join(bad) if bad else "all checks passed"


def _check_echo(port: int) -> str | None:
    status, headers, body = http_get(port, "/echo/abc")
    if status != 200 or body != b"abc":
        return f"GET /echo/abc gave {status} {body[:40]!r}"
    if not headers.get("content-type", "").startswith("text/plain"):
        return f"GET /echo/abc content-type {headers.get('content-type')!r}"
    return None


def _check_file(port: int, content: Content) -> str | None:
    status, _, body = http_get(port, f"/files/{BIG_FILE}")
    if status != 200 or body != content.big:
        return f"GET /files/{BIG_FILE} gave {status}, {len(body)} bytes (wrong content)"
    return None


def _check_page(port: int, content: Content, result: ProbeResult) -> str | None:
    status, headers, body = http_get(port, f"/files/{PAGE_FILE}", {"Accept-Encoding": "gzip"})
    result.page_wire_bytes = len(body)
    if headers.get("content-encoding", "").lower() == "gzip":
        result.page_gzip = True
        try:
            body = gzip.decompress(body)
        except (OSError, EOFError) as exc:
            return f"bad gzip body: {exc}"
    if status != 200 or body != content.page:
        return f"GET /files/{PAGE_FILE} gave {status}, {len(body)} bytes (wrong content)"
    return None


def probe(port: int, content: Content) -> ProbeResult:
    """Run every check against a running server."""
    result = ProbeResult()
    checks = {
        "echo": lambda: _check_echo(port),
        "file": lambda: _check_file(port, content),
        "page": lambda: _check_page(port, content, result),
    }
    for name, check in checks.items():
        try:
            result.problems[name] = check()
        except (OSError, http.client.HTTPException) as exc:
            result.problems[name] = f"{type(exc).__name__}: {exc}"
    return result
