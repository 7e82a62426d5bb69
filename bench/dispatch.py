"""Route dispatch cost of the native App with 10, 100 and 1,000 routes: hit, miss and 405.

`python -m bench.dispatch [--rounds N]` registers N routes shaped like a REST API (a quarter
each: `/api/v1/resN`, `/api/v1/resN/{id:int}` with GET and PUT, and
`/api/v1/resN/{id:int}/items/{name}`), then times `app.open(request)` — the router's whole
job, parameter conversion included — for:

- hit:  GET of the *last* registered parameter route (the worst case for a list scan),
- miss: GET of a path no route takes (404),
- 405:  DELETE of a path whose routes allow only GET and PUT.

For contrast it times the same lookups with a linear scan of compiled regexes (the design
Starlette uses), which grows with the number of routes. Prints the best of several rounds,
in microseconds per dispatch.
"""

from __future__ import annotations

import argparse
import functools
import re
import time
from collections.abc import Callable
from typing import Any

from reactor.app.application import App
from reactor.app.types import Headers, Request

SIZES = (10, 100, 1000)


def make_app(count: int) -> App:
    app = App()
    groups = max(1, count // 4)
    for index in range(groups):
        base = f"/api/v1/res{index}"
        app.get(base)(_handler)
        app.route(base + "/{id:int}", ("GET", "PUT"))(_handler)
        app.get(base + "/{id:int}/items/{name}")(_handler)
    return app


def _handler(request: Request, **params: Any) -> str:
    return "ok"


def targets(count: int) -> dict[str, tuple[str, str]]:
    last = max(1, count // 4) - 1
    return {
        "hit": ("GET", f"/api/v1/res{last}/42/items/widget"),
        "miss": ("GET", "/api/v1/nothing/42"),
        "405": ("DELETE", f"/api/v1/res{last}/42"),
    }


class RegexScan:
    """The list-of-regexes router, for contrast: first match wins, then the method check."""

    def __init__(self, count: int) -> None:
        self.routes: list[tuple[re.Pattern[str], set[str]]] = []
        for index in range(max(1, count // 4)):
            base = f"/api/v1/res{index}"
            for template, methods in ((base, {"GET"}), (base + "/{id:int}", {"GET", "PUT"}),
                                      (base + "/{id:int}/items/{name}", {"GET"})):
                pattern = re.sub(r"\{(\w+):int\}", r"(?P<\1>[0-9]+)", template)
                pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern)
                self.routes.append((re.compile(f"^{pattern}$"), methods))

    def resolve(self, method: str, path: str) -> Any:
        allowed = None
        for pattern, methods in self.routes:
            match = pattern.match(path)
            if match is not None:
                if method in methods:
                    return {k: int(v) if v.isdigit() else v
                            for k, v in match.groupdict().items()}
                allowed = methods
        return allowed


def best_us(fn: Callable[[], object], *, rounds: int, number: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - started) / number)
    return best * 1e6


def measure(rounds: int = 7, number: int = 20000) -> list[tuple[int, str, float, float]]:
    rows = []
    for count in SIZES:
        app = make_app(count)
        scan = RegexScan(count)
        for case, (method, path) in targets(count).items():
            request = Request(method, path, "", "1.1", Headers([(b"host", b"bench")]))
            ours = best_us(functools.partial(app.open, request), rounds=rounds,
                           number=number)
            theirs = best_us(functools.partial(scan.resolve, method, path), rounds=rounds,
                             number=max(200, number // max(1, count // 10)))
            rows.append((count, case, ours, theirs))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dispatch")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--number", type=int, default=20000)
    args = parser.parse_args(argv)
    print("| routes | case | reactor App.open µs | regex list scan µs |")
    print("|---:|---|---:|---:|")
    for count, case, ours, theirs in measure(args.rounds, args.number):
        print(f"| {count} | {case} | {ours:.2f} | {theirs:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
