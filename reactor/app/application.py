"""The application: router plus response middleware, answering `Response` or `Offload`.

Strategy: the connection calls `app(request)`. Cheap routes answer inline; a blocking route
answers `Offload`, and everything after it (the handler and the response middleware) runs
on a worker. Compression of a large body found on the loop thread is offloaded the same way,
so the loop never spends long in zlib.
"""

from __future__ import annotations

from collections.abc import Iterable

from reactor.app import handlers
from reactor.app.compression import DEFAULT_TYPES, CompressibleTypes, accepts_gzip, gzip_bytes
from reactor.app.router import Route, Router
from reactor.app.static import GzipCache, StaticHandler, StaticMount
from reactor.app.types import Handler, Offload, Request, Response, Upload

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
    """Callable as `app(request) -> Response | Offload`."""

    def __init__(self, router: Router | None = None,
                 compression: CompressionPolicy | None = None) -> None:
        self.router = router if router is not None else Router()
        self.compression = compression if compression is not None else CompressionPolicy()

    def route(self, method: str, template: str, *, blocking: bool = False):  # type: ignore[no-untyped-def]
        """Decorator form of `router.add`."""
        def register(handler: Handler) -> Handler:
            self.router.add(method, template, handler, blocking=blocking)
            return handler
        return register

    def begin(self, request: Request) -> Upload | Response | None:
        """At head time, for a request with a body: an `Upload` (or early `Response`) when
        its route streams bodies, else None (the connection buffers the body)."""
        found = self.router.resolve(request)
        if type(found) is not Route or not found.stream:
            return None
        return found.handler(request)  # type: ignore[return-value]

    def __call__(self, request: Request) -> Response | Offload:
        found = self.router.resolve(request)
        if type(found) is not Route:
            return found  # type: ignore[return-value]  # a 404/405/OPTIONS answer
        if found.stream:  # a body that was not streamed (empty, say): the same steps at once
            upload = found.handler(request)
            if type(upload) is Response:
                return upload
            return Offload(_run_upload, upload, request.body)
        if found.blocking:
            return Offload(self._run_blocking, found, request)
        result = found.handler(request)
        if type(result) is Offload:
            return result
        return self._finish(request, result, in_worker=False)  # type: ignore[arg-type]

    def _run_blocking(self, route: Route, request: Request) -> Response | Offload:
        result = route.handler(request)
        if type(result) is Offload:
            return result
        return self._finish(request, result, in_worker=True)  # type: ignore[arg-type]

    def _finish(self, request: Request, response: Response, *, in_worker: bool
                ) -> Response | Offload:
        """Response middleware. Today: gzip by `Accept-Encoding`."""
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
            elif name == b"content-encoding":
                return response  # already encoded (a sidecar, say): never twice
        if content_type not in policy.types:
            return response
        response.headers.append(VARY_ACCEPT_ENCODING)
        if not accepts_gzip(_accept_encoding(request)):
            return response
        if in_worker or len(body) <= INLINE_GZIP_MAX_BYTES:
            return _gzip_response(response, policy.level)
        return Offload(_gzip_response, response, policy.level)


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
    response.body = gzip_bytes(response.body, level)  # type: ignore[arg-type]
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
