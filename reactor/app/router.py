"""The router: maps (method, path) to a route, with typed `{param}` segments, 404, 405, OPTIONS.

Strategy: every template is compiled at registration into a trie of path segments, so the
cost of a lookup depends on the depth of the path, never on how many routes there are. A
node has literal children (a dict), then typed parameter children tried in a fixed order
(int, float, uuid, then any segment), then an optional `{name:path}` tail that takes the
rest of the path, slashes included. Literals win over parameters and narrower types over
wider ones; the walk backtracks, so `/users/me` and `/users/{id:int}` and `/users/{name}` can
live side by side. A literal that a request target can only carry escaped (`/café`, `/a b`)
is also keyed by its percent-encoded UTF-8 form, which is what clients send. Paths without
parameters are also kept in a dict keyed by the whole path: the commonest hit is one dict
lookup. Registering the same shape twice for one method (two
templates that match exactly the same paths) is an error naming both.

Parameter kinds: `str` (the default for the native API: percent-decoded UTF-8; invalid
UTF-8 does not match), `bytes` (percent-decoded bytes: the default of the low-level
`Router.add`), `int` (ASCII digits), `float` (digits with an optional fraction, finite),
`uuid` (32 hex digits, or 8-4-4-4-12 with dashes), and `path` (the rest of the path,
decoded like str, or like bytes for the low-level API). A value that does not convert does
not match: the request is a 404 (or matches another route).

HEAD is served by GET routes (the connection drops the body); OPTIONS and 405 answers carry
`Allow`. A path no route takes for its method, whose form with a trailing "/" has one that
does, is a 308 to that form (Flask's strict slashes; only the no-match path pays the second
walk). A mount (`mount(prefix, handler)`) takes every method for `prefix` and below that no
route matches, longest prefix first; its handler finds the rest of the path, percent-decoded
once, in `params["path"]`. A mount may also take an `upload_handler`: PUT under the prefix
then goes to it as a stream route, every other method still to the mount's handler.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, unquote, unquote_to_bytes

from reactor.app.types import Request, Response, text_response

KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT"}
)
PARAM_KINDS = ("str", "bytes", "int", "float", "uuid", "path")
_FLOAT = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _escape_normalised(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else match.group(0).upper()


def normalise_escapes(path: str) -> str:
    """`path` with percent-encoded unreserved characters decoded (`%71` is `q`, `%7E` is
    `~`) and other escapes upper-cased: RFC 3986 6.2.2 calls such URIs equivalent, so a
    literal segment or an `{n:int}` must match them too. Reserved escapes (`%2F`) stay."""
    return _ESCAPE.sub(_escape_normalised, path)


# What a path segment may hold unescaped besides the unreserved characters (RFC 3986 pchar).
_PCHAR_EXTRA = "!$&'()*+,;=:@"


def _literal_keys(text: str) -> list[str]:
    """The forms in which a request's path (after `normalise_escapes`) carries the literal
    segment `text`: as the template has it, and, when that differs, percent-encoded UTF-8,
    the only way a request target (visible ASCII) can carry `/café` (`/caf%C3%A9`)."""
    escaped = quote(text, safe=_PCHAR_EXTRA)
    return [text] if escaped == text else [text, escaped]


# the two forms a uuid is written in: 32 hex digits, or 8-4-4-4-12 with dashes (either case)
_UUID = re.compile(r"[0-9A-Fa-f]{32}|[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}"
                   r"-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_NO = object()  # "does not convert"
_HITS_MAX = 1024  # remembered route matches (see Router._hits)
_HIT_PATH_MAX = 256  # longer paths are walked every time


class RouteError(Exception):
    """A template that cannot be a route, or one that clashes with another (a programming
    error found at start-up)."""


class Route:
    """One handler for one method on one template.

    `blocking`: the handler runs in the thread pool (the native API's default; `inline=True`
    routes run on the loop). `stream`: the handler is called at head time and answers an
    `Upload` for the body. `kwargs`: the handler is called as `handler(request, **params)`
    (the native API) rather than `handler(request)`. `kind` is "http"; other kinds of route
    (WebSocket) can share the trie under their own method key. `chain` is the handler
    wrapped in the app's middleware, composed on first use.
    """

    __slots__ = ("blocking", "chain", "decoders", "handler", "head_answer", "kind", "kwargs",
                 "method", "names", "stream", "template")

    def __init__(self, method: str, template: str, handler: Callable[..., Any],
                 blocking: bool, stream: bool = False, *, kwargs: bool = False,
                 kind: str = "http") -> None:
        self.method = method
        self.template = template
        self.handler = handler
        self.blocking = blocking
        self.stream = stream  # the handler answers at head time with an Upload
        self.kwargs = kwargs
        self.kind = kind
        self.names: tuple[tuple[str, str], ...] = ()  # (name, kind) of each parameter
        self.decoders: tuple[tuple[str, Callable[[str], Any] | None], ...] = ()
        self.chain: Callable[[Request], Any] | None = None
        # For a request holding its body back for 100 Continue: the answer the handler
        # gives whatever the body (a mount's 405), or None (see RouteDispatch.begin).
        self.head_answer: Callable[[Request], Response | None] | None = None

    def __repr__(self) -> str:
        return f"<Route {self.method} {self.template}>"

    def convert(self, values: list[Any]) -> dict[str, Any] | None:
        """The parameters by name from the matched raw values; None if one does not convert."""
        params: dict[str, Any] = {}
        for (name, decode), value in zip(self.decoders, values):  # noqa: B905 - same length
            if decode is not None:
                value = decode(value)
                if value is _NO:
                    return None
            params[name] = value
        return params


def _decode_bytes(raw: str) -> Any:
    return unquote_to_bytes(raw) if "%" in raw else raw.encode("latin-1")


def _decode_str(raw: str) -> Any:
    if "%" in raw:
        try:
            return unquote(raw, errors="strict")
        except UnicodeDecodeError:
            return _NO
    if not raw.isascii():  # the path arrived as latin-1 text of UTF-8 bytes
        try:
            return raw.encode("latin-1").decode("utf-8")
        except UnicodeDecodeError:
            return _NO
    return raw


# How a matched raw value becomes the parameter (None: converted while matching).
_DECODERS: dict[str, Callable[[str], Any] | None] = {
    "bytes": _decode_bytes, "str": _decode_str, "path": _decode_str,
    "int": None, "float": None, "uuid": None,
}


# Longer digit strings are no id (and int() refuses past sys.get_int_max_str_digits(), 4300).
_INT_MAX_DIGITS = 100


def _to_int(raw: str) -> Any:
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= _INT_MAX_DIGITS else _NO


def _to_float(raw: str) -> Any:
    if not _FLOAT.fullmatch(raw):
        return _NO
    value = float(raw)
    # 400 digits are valid syntax but read as inf: no number a handler can use
    return value if not math.isinf(value) else _NO


def _to_uuid(raw: str) -> Any:
    # uuid.UUID alone is too lenient: it drops dashes wherever they are and reads the hex
    # with int(), which takes a sign ("+123...", "----0123..." would be ids)
    if len(raw) not in (32, 36) or not _UUID.fullmatch(raw):
        return _NO
    return uuid.UUID(raw)


def _any(raw: str) -> Any:
    return raw


# Typed parameter children, in the order they are tried; str and bytes share the "seg" slot
# (they match the same segments; the route decodes).
_MATCHERS: dict[str, tuple[int, Callable[[str], Any]]] = {
    "int": (0, _to_int), "float": (1, _to_float), "uuid": (2, _to_uuid), "seg": (3, _any),
}


class _Node:
    __slots__ = ("allow", "literal", "methods", "params", "tail")

    def __init__(self) -> None:
        self.literal: dict[str, _Node] = {}
        self.params: list[tuple[str, Callable[[str], Any], _Node]] = []
        self.tail: _Node | None = None  # the `{name:path}` child
        self.methods: dict[str, Route] | None = None
        self.allow: bytes | None = None

    def param_child(self, slot: str) -> _Node:
        for name, _fn, child in self.params:
            if name == slot:
                return child
        child = _Node()
        self.params.append((slot, _MATCHERS[slot][1], child))
        self.params.sort(key=lambda item: _MATCHERS[item[0]][0])
        return child

    def allow_header(self) -> bytes:
        if self.allow is None:
            self.allow = _allow_header(self.methods or {})
        return self.allow


def parse_template(template: str, default_kind: str) -> list[tuple[str, str, str]]:
    """The template as (what, name, kind) per segment: ("lit", text, ""), ("param", name,
    kind) or ("tail", name, kind). Raises RouteError."""
    if not template.startswith("/"):
        raise RouteError(f"route {template!r} must start with '/'")
    parts = template.split("/")[1:]
    out: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    for index, part in enumerate(parts):
        if part.startswith("{") and part.endswith("}"):
            name, _, kind = part[1:-1].partition(":")
            kind = kind or default_kind
            if not name.isidentifier() or kind not in PARAM_KINDS:
                raise RouteError(f"bad parameter {part!r} in route {template!r}"
                                 f" (types: {', '.join(PARAM_KINDS)})")
            if name in seen:
                raise RouteError(f"parameter {name!r} twice in route {template!r}")
            seen.add(name)
            if kind == "path":
                if index != len(parts) - 1:
                    raise RouteError(f"{{{name}:path}} must be last in {template!r}")
                out.append(("tail", name, "bytes" if default_kind == "bytes" else "path"))
            else:
                out.append(("param", name, kind))
        elif "{" in part or "}" in part:
            raise RouteError(f"a parameter must be a whole segment in {template!r}")
        else:
            out.append(("lit", part, ""))
    return out


class Router:
    """Routes registered at start-up; `resolve()` per request."""

    def __init__(self) -> None:
        self._root = _Node()
        self._static: dict[str, dict[str, Route]] = {}
        # (prefix, route, PUT stream route or None), longest prefix first
        self._mounts: list[tuple[str, Route, Route | None]] = []
        self.routes: list[Route] = []
        # a path no route takes, whose form with a trailing "/" one does, is redirected
        # there (308), as Flask does (werkzeug's strict_slashes); never the reverse
        self.redirect_slashes = True
        # path -> (method, route, params) of the last trie walks or mount lookups that found
        # a route: a path asked again (the common case: a few hot URLs, a site's static
        # files) costs one dict lookup, not a walk. Converters are pure and their values
        # immutable, so a hit equals a walk; any change to the routes or mounts empties it.
        self._hits: dict[str, tuple[str, Route, dict[str, Any]]] = {}

    def add(self, method: str, template: str, handler: Callable[..., Any], *,
            blocking: bool = False, stream: bool = False, kwargs: bool = False,
            default_kind: str = "bytes", kind: str = "http") -> Route:
        """Register `handler` for `method` on `template` and return its route. With
        `stream`, it is called when the request head arrives and answers with an `Upload`
        that receives the body piece by piece. Raises RouteError for a bad template or a
        clash with a route already registered."""
        method = method.upper()
        segments = parse_template(template, default_kind)
        route = Route(method, template, handler, blocking, stream, kwargs=kwargs, kind=kind)
        route.names = tuple((name, kind_) for what, name, kind_ in segments if what != "lit")
        route.decoders = tuple((name, _DECODERS[kind_]) for name, kind_ in route.names)
        node = self._root
        for what, name, kind_ in segments:
            if what == "lit":
                keys = _literal_keys(name)
                child = node.literal.get(keys[0]) or _Node()
                for key in keys:
                    node.literal[key] = child
                node = child
            elif what == "tail":
                if node.tail is None:
                    node.tail = _Node()
                node = node.tail
            else:
                node = node.param_child(kind_ if kind_ in _MATCHERS else "seg")
        if node.methods is None:
            node.methods = {}
        existing = node.methods.get(method)
        if existing is not None:
            if existing.template == template:
                raise RouteError(f"{method} {template} is registered twice")
            raise RouteError(f"{method} {template} conflicts with {method} {existing.template}"
                             " (they match the same paths)")
        node.methods[method] = route
        node.allow = None
        self._hits = {}
        if not route.names:
            # the whole path as written, and percent-encoded
            forms = [_literal_keys(name) for _what, name, _kind in segments]
            for path in {"/" + "/".join(keys[0] for keys in forms),
                         "/" + "/".join(keys[-1] for keys in forms)}:
                self._static.setdefault(path, {})[method] = route
        self.routes.append(route)
        return route

    def get(self, template: str, handler: Callable[..., Any], *, blocking: bool = False) -> None:
        self.add("GET", template, handler, blocking=blocking)

    def post(self, template: str, handler: Callable[..., Any], *,
             blocking: bool = False) -> None:
        self.add("POST", template, handler, blocking=blocking)

    def mount(self, prefix: str, handler: Callable[..., Any], *, blocking: bool = False,
              upload_handler: Callable[..., Any] | None = None,
              head_answer: Callable[[Request], Response | None] | None = None) -> None:
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
        route = Route("*", prefix, handler, blocking)
        route.head_answer = head_answer
        self._mounts.append((prefix, route, upload))
        self._mounts.sort(key=lambda item: len(item[0]), reverse=True)
        self._hits = {}

    def server_allow(self) -> bytes:
        """`OPTIONS *`'s Allow: every method some route or mount takes (RFC 9110 9.3.7,
        the server's capabilities), not a fixed list."""
        names = {route.method for route in self.routes if route.kind == "http"}
        for _prefix, _route, upload in self._mounts:
            names |= {"GET", "HEAD"} | ({"PUT", "DELETE"} if upload is not None else set())
        if "GET" in names:
            names.add("HEAD")
        names.add("OPTIONS")
        return ", ".join(sorted(names)).encode()

    @property
    def mounts(self) -> list[str]:
        return [prefix for prefix, _, _ in self._mounts]

    def _remember(self, path: str, method: str, route: Route, params: dict[str, Any]) -> None:
        if len(path) <= _HIT_PATH_MAX:
            hits = self._hits
            if len(hits) >= _HITS_MAX:
                hits.clear()
            hits[path] = (method, route, params.copy())

    def find_mount(self, path: str, method: str) -> tuple[Route, str] | None:
        """The mount route that takes `path` (and the rest of the path), or None."""
        for prefix, route, upload in self._mounts:
            if upload is not None and method == "PUT":
                route = upload
            if prefix == "/":
                if path[:1] == "/":
                    return route, path
            elif path.startswith(prefix) and path[len(prefix):len(prefix) + 1] in ("", "/"):
                return route, path[len(prefix):]
        return None

    def _walk(self, node: _Node, parts: list[str], index: int, values: list[Any],
              method: str, seen: list[_Node]) -> tuple[Route, dict[str, Any]] | None:
        """Depth-first match of parts[index:] below `node`: the route for `method` and its
        parameters, or None; every node that matched the path is appended to `seen`."""
        if index == len(parts):
            return self._endpoint(node, values, method, seen)
        part = parts[index]
        child = node.literal.get(part)
        if child is not None:
            found = self._walk(child, parts, index + 1, values, method, seen)
            if found is not None:
                return found
        if part:
            for _slot, convert, child in node.params:
                value = part if convert is _any else convert(part)  # str/bytes: no call
                if value is not _NO:
                    values.append(value)
                    found = self._walk(child, parts, index + 1, values, method, seen)
                    if found is not None:
                        return found
                    values.pop()
        tail = node.tail
        if tail is not None:
            rest = "/".join(parts[index:])
            if rest:
                values.append(rest)
                found = self._endpoint(tail, values, method, seen)
                values.pop()
                if found is not None:
                    return found
        return None

    @staticmethod
    def _endpoint(node: _Node, values: list[Any], method: str, seen: list[_Node]
                  ) -> tuple[Route, dict[str, Any]] | None:
        methods = node.methods
        if methods is None:
            return None
        route = methods.get(method)
        if route is None and method == "HEAD":
            route = methods.get("GET")
        if route is not None:
            params = route.convert(values)
            if params is not None:
                return route, params
            return None
        seen.append(node)
        return None

    def _slash_redirect(self, request: Request, path: str, method: str) -> Response | None:
        """Flask's strict slashes (unless `redirect_slashes` is off): no route takes `path`
        (not ending in "/") for `method`, and `path` + "/"
        has one that does (`/users/` or `/users/{id}/` for `/users/7`; OPTIONS: any route
        there) -> a 308 to it, which keeps the method and the body, the query kept.

        The Location is the request's own path (escapes as sent) plus "/": a relative
        reference (RFC 9110 10.2.2) the client resolves against the URL it asked for, so
        it is right behind a proxy and never built from a Host field. werkzeug writes an
        absolute URL from the Host field; a browser ends at the same address. A path that
        starts with "//" would be a network-path reference (`//evil.example/`, another
        host): no redirect for it."""
        if (not self.redirect_slashes or path[:1] != "/" or path[:2] == "//"
                or path[-1:] == "/"):
            return None
        seen: list[_Node] = []
        if self._walk(self._root, (path + "/").split("/"), 1, [], method, seen) is None \
                and not (method == "OPTIONS" and seen):
            return None
        query = request.query
        return Response.redirect(f"{request.path}/?{query}" if query else
                                 f"{request.path}/", 308)

    def resolve(self, request: Request) -> Route | Response:
        """The route for this request (params stored on it), or a 404/405/501/OPTIONS answer."""
        path = request.path
        if "%" in path:
            path = normalise_escapes(path)
        method = request.method
        methods = self._static.get(path)
        if methods is not None:
            route = methods.get(method)
            if route is None and method == "HEAD":
                route = methods.get("GET")
            if route is not None:
                request.params = {}
                return route
        hit = self._hits.get(path)
        if hit is not None and hit[0] == method:
            request.params = hit[2].copy()  # the request's own: middleware may change it
            return hit[1]
        seen: list[_Node] = []
        found = self._walk(self._root, path.split("/"), 1, [], method, seen) \
            if path[:1] == "/" else None
        if found is not None:
            route, params = found
            self._remember(path, method, route, params)
            request.params = params
            return route
        if self._mounts and not seen:  # a route's path wins over a mount, whatever the method
            mounted = self.find_mount(path, method)
            if mounted is not None:
                if method not in KNOWN_METHODS:
                    return text_response(501, "Not Implemented\n")
                route, rest = mounted
                params = {"path": unquote_to_bytes(rest)}
                self._remember(path, method, route, params)
                request.params = params
                return route
        if not seen:
            redirect = self._slash_redirect(request, path, method)
            if redirect is not None:
                return redirect
            if method not in KNOWN_METHODS:
                return text_response(501, "Not Implemented\n")
            if method == "OPTIONS" and path == "*":
                return Response(204, [(b"Allow", self.server_allow())])
            return text_response(404, "Not Found\n")
        # Allow lists every method the path has (RFC 9110 10.2.1): with two parameter routes
        # matching it (`{id:int}` GET, `{name}` POST), the union of their nodes' methods
        allow = seen[0].allow_header() if len(seen) == 1 else _allow_union(seen)
        if method == "OPTIONS":
            return Response(204, [(b"Allow", allow)])
        redirect = self._slash_redirect(request, path, method)
        if redirect is not None:
            return redirect
        if method not in KNOWN_METHODS:
            return text_response(501, "Not Implemented\n")
        return text_response(405, "Method Not Allowed\n", [(b"Allow", allow)])


def _allow_header(methods: dict[str, Route]) -> bytes:
    names = {method for method, route in methods.items() if route.kind == "http"}
    if "GET" in names:
        names.add("HEAD")
    names.add("OPTIONS")
    return ", ".join(sorted(names)).encode()


def _allow_union(nodes: list[_Node]) -> bytes:
    names: set[bytes] = set()
    for node in nodes:
        names.update(node.allow_header().split(b", "))
    return b", ".join(sorted(names))
