"""The built-in application: router plus response middleware, behind the app protocol.

Strategy: the connection calls `app.open(request)` once per request (the route is resolved
there, once) and asks the returned `RouteDispatch` for the body policy and the response.
Cheap routes answer inline; a blocking route answers `Offload`, and everything after it (the
handler and the response middleware) runs on a worker. Any `Offload` a handler returns is
wrapped the same way, so every response passes the middleware exactly once. Compression of a
large body found on the loop thread is offloaded too, so the loop never spends long in zlib.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from reactor.app import handlers
from reactor.app.compression import DEFAULT_TYPES, CompressibleTypes, accepts_gzip, gzip_bytes
from reactor.app.router import Route, Router
from reactor.app.static import GzipCache, StaticHandler, StaticMount
from reactor.app.types import Handler, Offload, Request, Response, Upload
from reactor.app.websocket import Echo, HandlerFactory, websocket_endpoint

VARY_ACCEPT_ENCODING = (b"Vary", b"Accept-Encoding")
CONTENT_ENCODING_GZIP = (b"Content-Encoding", b"gzip")

# Below this many bytes gzip costs less than a round trip through the pool (measured: a few
# microseconds for a short echo against ~50 µs for the hand-off), so it runs inline.
INLINE_GZIP_MAX_BYTES = 4096


class CompressionPolicy:
    """What to compress: on/off, zlib level, minimum size, media types."""

    __slots__ = ("enabled", "level", "min_size", "types")

    def __init__(self, *, enabled: bool = True, level: int = 6, min_size: int = 0,
                 types: Iterable[str] = DEFAULT_TYPES) -> None:
        self.enabled = enabled
        self.level = level
        self.min_size = min_size
        self.types = CompressibleTypes(types)


class App:
    """The built-in application: a router plus response middleware (gzip by Accept-Encoding).

    Serves the connection through the `Application` protocol: `open(request)` resolves the
    route once and returns the request's `Dispatch`.
    """

    def __init__(self, router: Router | None = None,
                 compression: CompressionPolicy | None = None) -> None:
        self.router = router if router is not None else Router()
        self.compression = compression if compression is not None else CompressionPolicy()

    def route(self, method: str, template: str, *, blocking: bool = False
              ) -> Callable[[Handler], Handler]:
        """Decorator form of `router.add`."""
        def register(handler: Handler) -> Handler:
            self.router.add(method, template, handler, blocking=blocking)
            return handler
        return register

    def websocket(self, template: str, *, inline: bool | None = None,
                  subprotocols: Iterable[str] = (), origins: Iterable[str] | None = None
                  ) -> Callable[[HandlerFactory], HandlerFactory]:
        """Decorator: a WebSocket endpoint at `template` (GET), one `factory()` handler per
        session (see reactor.app.websocket). `inline` overrides the handler's own flag."""
        def register(factory: HandlerFactory) -> HandlerFactory:
            self.router.get(template, websocket_endpoint(
                factory, inline=inline, subprotocols=subprotocols, origins=origins))
            return factory
        return register

    def open(self, request: Request) -> RouteDispatch:
        return RouteDispatch(self, request, self.router.resolve(request))

    def finish(self, request: Request, response: Response, *, in_worker: bool
               ) -> Response | Offload:
        """Response middleware, run once per response. Today: gzip by `Accept-Encoding`.

        A response whose encoding was already decided (a `Content-Encoding`, or a `Vary`
        naming Accept-Encoding, as the static handler sets) is left as it is.
        """
        policy = self.compression
        body = response.body
        if not policy.enabled or type(body) is not bytes or len(body) < policy.min_size:
            return response
        status = response.status
        if status < 200 or status in (204, 206, 304):
            return response
        content_type = None
        for name, value in response.headers:  # one pass; names may come in any case
            name = name.lower()
            if name == b"content-type":
                content_type = value
            elif name == b"content-encoding" or (
                    name == b"vary" and b"accept-encoding" in value.lower()):
                return response  # already decided: never twice
        if content_type not in policy.types:
            return response
        response.headers.append(VARY_ACCEPT_ENCODING)
        if not accepts_gzip(_accept_encoding(request)):
            return response
        if in_worker or len(body) <= INLINE_GZIP_MAX_BYTES:
            return _gzip_response(response, policy.level)
        return Offload(_gzip_response, response, policy.level)


class RouteDispatch:
    """One request through `App`: its resolved route (or fixed answer) and the middleware
    around the handler, including any pool continuation the handler asks for."""

    __slots__ = ("app", "found", "request")

    def __init__(self, app: App, request: Request, found: Route | Response) -> None:
        self.app = app
        self.request = request
        self.found = found

    def begin(self) -> Upload | Response | None:
        found = self.found
        if isinstance(found, Response) or not found.stream:
            return None
        answer = found.handler(self.request)
        if isinstance(answer, Offload):
            raise TypeError(f"stream route {found.template} answered an Offload at head time")
        return answer

    def respond(self) -> Response | Offload:
        found = self.found
        request = self.request
        if isinstance(found, Response):  # a 404/405/OPTIONS answer of the router
            return self.app.finish(request, found, in_worker=False)
        if found.stream:  # a body that was not streamed (empty, say): the same steps at once
            upload = self.begin()
            if not isinstance(upload, Upload):
                assert upload is not None  # a stream route answers an Upload or a Response
                return self.complete(upload)  # refused
            return Offload(self._in_worker, Offload(_run_upload, upload, request.body))
        if found.blocking:
            return Offload(self._in_worker, Offload(self._call, found))
        return self._after(self._call(found), in_worker=False)

    def _call(self, route: Route) -> Response | Offload:
        result = route.handler(self.request)
        if isinstance(result, Upload):
            raise TypeError(f"route {route.template} answered an Upload but is not a stream"
                            " route")
        return result

    def complete(self, response: Response) -> Response | Offload:
        return self.app.finish(self.request, response, in_worker=False)

    def _after(self, result: Response | Offload, *, in_worker: bool) -> Response | Offload:
        if isinstance(result, Offload):
            return Offload(self._in_worker, result)
        return self.app.finish(self.request, result, in_worker=in_worker)

    def _in_worker(self, offload: Offload) -> Response | Offload:
        """In the pool: the handler's continuation, then the middleware on its answer."""
        return self._after(offload.fn(*offload.args), in_worker=True)


def _run_upload(upload: Upload, body: bytes) -> Response:
    try:
        refused = upload.start()
        if refused is not None:
            return refused
        if body:
            upload.write(body)
        return upload.finish()
    except BaseException:
        upload.abort()
        raise


def _accept_encoding(request: Request) -> bytes | None:
    """The Accept-Encoding list; repeated field lines form one list (RFC 9110 5.3)."""
    values = request.headers.get_all(b"accept-encoding")
    if not values:
        return None
    return values[0] if len(values) == 1 else b", ".join(values)


def _gzip_response(response: Response, level: int) -> Response:
    body = response.body
    assert isinstance(body, bytes)  # `finish` compresses bytes bodies only
    response.body = gzip_bytes(body, level)
    response.headers.append(CONTENT_ENCODING_GZIP)
    return response


def build_app(*, directory: str | None, uploads: bool = True,
              compression: CompressionPolicy | None = None,
              mounts: list[StaticMount] | None = None,
              gzip_cache: GzipCache | None = None) -> App:
    """The built-in routes of the original challenge, plus static document roots.

    Routes win over mounts, except the empty `GET /` placeholder, which a mount at `/`
    replaces. All mounts share one compressed-file cache (`gzip_cache`, default 64 MiB).
    """
    app = App(compression=compression)
    router = app.router
    mounts = mounts or []
    if not any(mount.prefix == "/" for mount in mounts):
        router.get("/", handlers.root)
    router.get("/echo/{s}", handlers.echo)
    router.get("/user-agent", handlers.user_agent)
    app.websocket("/ws/echo")(Echo)
    if directory is not None:
        files = handlers.FilesHandler(directory, uploads=uploads)
        router.get("/files/{name}", files.get, blocking=True)
        router.add("POST", "/files/{name}", files.upload, stream=True)
        router.add("PUT", "/files/{name}", files.upload, stream=True)
        router.add("DELETE", "/files/{name}", files.delete, blocking=True)
    if mounts:
        add_mounts(app, mounts, gzip_cache if gzip_cache is not None else GzipCache())
    return app


def add_mounts(app: App, mounts: list[StaticMount], cache: GzipCache) -> None:
    """Mount each document root on the app's router, sharing `cache` and its gzip policy.
    A mount with uploads streams PUT bodies: PUT is its stream route; GET stays as it is."""
    policy = app.compression
    for mount in mounts:
        handler = StaticHandler(mount, cache, types=policy.types, gzip_enabled=policy.enabled,
                                level=policy.level, min_size=policy.min_size)
        app.router.mount(mount.prefix, handler,
                         upload_handler=handler.upload if mount.uploads else None)
