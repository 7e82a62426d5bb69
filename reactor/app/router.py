"""The router: maps (method, path) to a handler, with `{param}` segments, 404, 405 and OPTIONS.

Strategy: routes without parameters live in a dict keyed by path; templates with `{name}`
segments are matched segment by segment (no regex). A template's last segment may be
`{name:path}` to capture the rest of the path, slashes included. Captured values are
percent-decoded once, as bytes. HEAD is served by GET handlers (the connection drops the body).
A mount (`mount(prefix, handler)`) takes every method for `prefix` and the paths below it
that no route matches — routes always win — the longest prefix first; the handler finds
the rest of the path, percent-decoded once, in `params["path"]`. Prefixes match the path
as received (still percent-encoded). A mount may also take an `upload_handler`: PUT under
the prefix then goes to it as a stream route (see `add(..., stream=True)`), every other
method still to the mount's handler.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from reactor.app.types import Handler, Request, Response, UploadHandler, text_response

KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT"}
)


class RouteError(Exception):
    """A template that cannot be a route (a programming error at start-up)."""


class Route:
    """One handler for one method on one template."""

    __slots__ = ("blocking", "handler", "method", "stream", "template")

    def __init__(self, method: str, template: str, handler: Handler | UploadHandler,
                 blocking: bool, stream: bool = False) -> None:
        self.method = method
        self.template = template
        self.handler = handler
        self.blocking = blocking
        self.stream = stream  # the handler answers at head time with an Upload


class _Pattern:
    """A template split into literal segments and parameter names."""

    __slots__ = ("methods", "names", "rest", "segments")

    def __init__(self, template: str) -> None:
        parts = template.split("/")[1:]
        self.segments: list[str | None] = []  # None marks a parameter
        self.names: list[str] = []
        self.rest = False
        for index, part in enumerate(parts):
            if part.startswith("{") and part.endswith("}"):
                name, _, kind = part[1:-1].partition(":")
                if not name.isidentifier() or kind not in ("", "path"):
                    raise RouteError(f"bad parameter {part!r} in route {template!r}")
                if kind == "path":
                    if index != len(parts) - 1:
                        raise RouteError(f"{{{name}:path}} must be last in {template!r}")
                    self.rest = True
                self.segments.append(None)
                self.names.append(name)
            elif "{" in part or "}" in part:
                raise RouteError(f"a parameter must be a whole segment in {template!r}")
            else:
                self.segments.append(part)
        self.methods: dict[str, Route] = {}

    def match(self, parts: list[str]) -> dict[str, bytes] | None:
        segments = self.segments
        count = len(segments)
        if len(parts) != count and not (self.rest and len(parts) >= count):
            return None
        params: dict[str, bytes] = {}
        names = iter(self.names)
        for index, literal in enumerate(segments):
            if literal is None:
                if self.rest and index == count - 1:
                    value = "/".join(parts[index:])
                else:
                    value = parts[index]
                if not value:
                    return None
                params[next(names)] = unquote_to_bytes(value)
            elif parts[index] != literal:
                return None
        return params


class Router:
    """Routes registered at start-up; `resolve()` per request."""

    def __init__(self) -> None:
        self._static: dict[str, dict[str, Route]] = {}
        self._patterns: list[_Pattern] = []
        self._by_template: dict[str, _Pattern] = {}
        # (prefix, route, PUT stream route or None), longest prefix first
        self._mounts: list[tuple[str, Route, Route | None]] = []

    def add(self, method: str, template: str, handler: Handler | UploadHandler, *,
            blocking: bool = False, stream: bool = False) -> None:
        """Register `handler`. With `stream`, it is called when the request head arrives
        and answers with an `Upload` that receives the body piece by piece."""
        if not template.startswith("/"):
            raise RouteError(f"route {template!r} must start with '/'")
        method = method.upper()
        route = Route(method, template, handler, blocking, stream)
        if "{" not in template:
            methods = self._static.setdefault(template, {})
        else:
            pattern = self._by_template.get(template)
            if pattern is None:
                pattern = self._by_template[template] = _Pattern(template)
                self._patterns.append(pattern)
            methods = pattern.methods
        if method in methods:
            raise RouteError(f"{method} {template} is registered twice")
        methods[method] = route

    def get(self, template: str, handler: Handler, *, blocking: bool = False) -> None:
        self.add("GET", template, handler, blocking=blocking)

    def post(self, template: str, handler: Handler, *, blocking: bool = False) -> None:
        self.add("POST", template, handler, blocking=blocking)

    def mount(self, prefix: str, handler: Handler, *, blocking: bool = False,
              upload_handler: UploadHandler | None = None) -> None:
        """Send every method for `prefix` and below (when no route matches) to `handler`;
        with `upload_handler`, PUT goes there instead, called at head time for an `Upload`."""
        if not prefix.startswith("/") or "{" in prefix:
            raise RouteError(f"mount {prefix!r} must start with '/' and have no parameters")
        prefix = prefix.rstrip("/") or "/"
        if any(existing == prefix for existing, _, _ in self._mounts):
            raise RouteError(f"mount {prefix} is registered twice")
        upload = None
        if upload_handler is not None:
            upload = Route("PUT", prefix, upload_handler, False, stream=True)
        self._mounts.append((prefix, Route("*", prefix, handler, blocking), upload))
        self._mounts.sort(key=lambda item: len(item[0]), reverse=True)

    def _find_mount(self, path: str, method: str) -> tuple[Route, str] | None:
        for prefix, route, upload in self._mounts:
            if upload is not None and method == "PUT":
                route = upload
            if prefix == "/":
                if path[:1] == "/":
                    return route, path
            elif path.startswith(prefix) and path[len(prefix):len(prefix) + 1] in ("", "/"):
                return route, path[len(prefix):]
        return None

    def _lookup(self, path: str) -> tuple[dict[str, Route], dict[str, bytes]] | None:
        methods = self._static.get(path)
        if methods is not None:
            return methods, {}
        if self._patterns:
            parts = path.split("/")[1:]
            for pattern in self._patterns:
                params = pattern.match(parts)
                if params is not None:
                    return pattern.methods, params
        return None

    def resolve(self, request: Request) -> Route | Response:
        """The route for this request (params stored on it), or a 404/405/501/OPTIONS answer."""
        found = self._lookup(request.path)
        method = request.method
        if found is None and self._mounts:
            mounted = self._find_mount(request.path, method)
            if mounted is not None:
                if method not in KNOWN_METHODS:
                    return text_response(501, "Not Implemented\n")
                route, rest = mounted
                request.params = {"path": unquote_to_bytes(rest)}
                return route
        if found is None:
            if method not in KNOWN_METHODS:
                return text_response(501, "Not Implemented\n")
            if method == "OPTIONS" and request.path == "*":
                return Response(204, [(b"Allow", b"GET, HEAD, POST, OPTIONS")])
            return text_response(404, "Not Found\n")
        methods, params = found
        matched = methods.get(method)
        if matched is None and method == "HEAD":
            matched = methods.get("GET")
        if matched is not None:
            request.params = params
            return matched
        allow = _allow_header(methods)
        if method == "OPTIONS":
            return Response(204, [(b"Allow", allow)])
        if method not in KNOWN_METHODS:
            return text_response(501, "Not Implemented\n")
        return text_response(405, "Method Not Allowed\n", [(b"Allow", allow)])


def _allow_header(methods: dict[str, Route]) -> bytes:
    names = set(methods)
    if "GET" in names:
        names.add("HEAD")
    names.add("OPTIONS")
    return ", ".join(sorted(names)).encode()
