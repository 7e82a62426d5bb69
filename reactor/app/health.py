"""Health endpoints: /livez and /readyz, answered before any application route.

`/livez` answers 200 whenever it is answered at all: the loop is running. `/readyz` answers
from a `Readiness` that the server (ops) moves from "starting" to "serving" once its
listeners accept, and to "draining" the moment it is told to stop, so that a load balancer
stops sending new connections while the listeners still accept for `timeouts.drain_s`.

The answers are `HealthResponse`s, so the access log can leave them out (a check every
second would otherwise drown the log) without looking at paths again.
"""

from __future__ import annotations

from typing import Any

from reactor.app.types import Application, Dispatch, Offload, Request, Response, Upload

STARTING = "starting"
SERVING = "serving"
DRAINING = "draining"
_NO_STORE = (b"Cache-Control", b"no-store")
_TEXT = (b"Content-Type", b"text/plain; charset=utf-8")
_ALLOW = (b"Allow", b"GET, HEAD, OPTIONS")  # as the router's Allow of a GET route


class Readiness:
    """Where the server is in its life: starting, serving or draining (set by ops)."""

    __slots__ = ("state",)

    def __init__(self, state: str = STARTING) -> None:
        self.state = state

    @property
    def ready(self) -> bool:
        return self.state == SERVING


class HealthResponse(Response):
    """A health endpoint's answer (the access log skips these unless configured)."""

    __slots__ = ()


class _Answer:
    """The Dispatch of a health request: the answer is known at head time."""

    __slots__ = ("response",)

    def __init__(self, response: Response) -> None:
        self.response = response

    def begin(self) -> Upload | Response | None:
        return None  # a body (there should be none) is read and ignored

    def respond(self) -> Response | Offload:
        return self.response

    def complete(self, response: Response) -> Response | Offload:
        return response


def _answer(status: int, text: bytes) -> HealthResponse:
    return HealthResponse(status, [_TEXT, _NO_STORE], text)


class HealthApp:
    """An `Application` wrapper answering the health paths itself; "" turns a path off."""

    __slots__ = ("_paths", "app", "livez", "readiness", "readyz")

    def __init__(self, app: Application, readiness: Readiness, *, livez: str = "/livez",
                 readyz: str = "/readyz") -> None:
        self.app = app
        self.readiness = readiness
        self.livez = livez or None
        self.readyz = readyz or None
        # One set lookup per request decides whether it is a health check at all.
        self._paths = frozenset(path for path in (self.livez, self.readyz) if path)

    def __getattr__(self, name: str) -> Any:
        """What configures the served app (`server.http.app.router`) reaches the wrapped one."""
        return getattr(self.app, name)

    def open(self, request: Request) -> Dispatch:
        if request.path in self._paths:
            return _Answer(self._answer(request.method, request.path))
        return self.app.open(request)

    def _answer(self, method: str, path: str) -> HealthResponse:
        if method not in ("GET", "HEAD"):
            if method == "OPTIONS":  # as the router answers OPTIONS on a route's path
                return HealthResponse(204, [_ALLOW])
            response = _answer(405, b"method not allowed\n")
            response.headers.append(_ALLOW)
            return response
        if path == self.livez:
            return _answer(200, b"live\n")
        state = self.readiness.state
        return _answer(200 if state == SERVING else 503, state.encode("ascii") + b"\n")
