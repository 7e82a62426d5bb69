"""The application: `App` (routes, middleware, gzip) behind the app protocol, and `build_app`.

Strategy: the connection calls `app.open(request)` once per request (the route is resolved
there, once, by the trie router) and asks the returned `RouteDispatch` for the body policy
and the response. An inline route runs on the loop: its handler, wrapped in the user
middleware (composed once per route), then `App.finish` (gzip). A pooled route (the native
API's default) answers `Offload`, and the whole chain runs on a worker, so middleware run
wherever the handler runs. A large or chunked body for a pooled route is spooled as it
arrives (`SpoolUpload`) and the chain runs when it is complete. Any `Offload` a low-level
handler returns is wrapped the same way, so every response passes `finish` exactly once.
An exception escaping handler and middleware becomes a 500 naming the request id, reported
once through `App.on_error`. Compression of a large body found on the loop thread is
offloaded too, so the loop never spends long in zlib. `FrontApp` puts static mounts in front
of a hosted app (native or WSGI).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from contextvars import Context, copy_context
from typing import Any, Protocol, TypeVar

from reactor.app import handlers
from reactor.app.compression import DEFAULT_TYPES, CompressibleTypes, accepts_gzip, gzip_bytes
from reactor.app.request import MissingKey
from reactor.app.responses import to_response
from reactor.app.router import Route, Router, parse_template
from reactor.app.spool import SpoolThenRun, release_after
from reactor.app.static import GzipCache, StaticHandler, StaticMount
from reactor.app.static.filecache import KEEP_BYTES_TOTAL
from reactor.app.types import (
    Application,
    Dispatch,
    HTTPError,
    Offload,
    Request,
    Response,
    StreamBody,
    Upload,
    UploadRefused,
    internal_error,
)
from reactor.app.websocket import Echo, HandlerFactory, websocket_endpoint

# The Vary field `finish` adds, told apart by identity (`is`) from an equal one the app or
# the static handler set: an app may return one Response object to every client, and the
# field added to it by an earlier request must not read as "encoding already decided".
VARY_ADDED = (b"Vary", b"Accept-Encoding")
CONTENT_ENCODING_GZIP = (b"Content-Encoding", b"gzip")

# Below this many bytes gzip costs less than a round trip through the pool (measured: a few
# microseconds for a short echo against ~50 µs for the hand-off), so it runs inline.
INLINE_GZIP_MAX_BYTES = 4096
SPOOL_BYTES = 1024 * 1024
"""Bodies larger than this (or chunked) for pooled native routes are spooled as they arrive."""

F = TypeVar("F", bound=Callable[..., Any])
Middleware = Callable[[Request, Callable[[Request], Response]], Any]


class ErrorReporter(Protocol):
    """Where an app reports a failure: `(event, exception, fields)`; thread-safe."""

    def __call__(self, event: str, exc: BaseException | None, fields: dict[str, Any]
                 ) -> None: ...


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
    """An application: routes, middleware and response compression (gzip by Accept-Encoding).

    The native API::

        app = App()

        @app.get("/users/{user_id:int}")
        def show_user(request: Request, user_id: int) -> Response: ...

        @app.middleware
        def timing(request: Request, call_next) -> Response: ...

    Handlers run in the thread pool unless registered with `inline=True` (then on the loop:
    only for cheap work). Middleware run in registration order (the first registered is the
    outermost) around the handler, wherever it runs, and may answer without calling
    `call_next`. An exception escaping handler and middleware is a 500 naming the request
    id, its traceback logged once through `on_error` (set by the server); without
    `on_error` it propagates to the server, which logs it and answers a plain 500. Raise
    `HTTPError(status)` for a deliberate error answer.

    A path no route takes whose form with a trailing slash one does (`/users` for
    `/users/`) is answered `308` to it, as Flask does; `redirect_slashes=False` makes it a
    404.

    Bodies up to `spool_bytes` arrive in `request.body`; larger (or chunked) ones for a
    pooled route are written to a spool as they arrive (memory, then a temporary file) and
    handed over as `request.body_file`. Routes of other kinds (WebSocket) can be added to
    the same router under their own method key (`Route.kind`).

    Serves the connection through the `Application` protocol: `open(request)` resolves the
    route once and returns the request's `Dispatch`.
    """

    def __init__(self, router: Router | None = None,
                 compression: CompressionPolicy | None = None, *,
                 spool_bytes: int = SPOOL_BYTES, redirect_slashes: bool = True) -> None:
        self.router = router if router is not None else Router()
        if not redirect_slashes:  # `/users` when only `/users/` exists: a 404, not a 308
            self.router.redirect_slashes = False
        self.compression = compression if compression is not None else CompressionPolicy()
        self.spool_bytes = spool_bytes
        self.middlewares: list[Middleware] = []
        self.on_error: ErrorReporter | None = None

    # ---- registration -------------------------------------------------------------------
    def route(self, path: str, methods: Iterable[str] = ("GET",), *, inline: bool = False,
              stream: bool = False) -> Callable[[F], F]:
        """Register the decorated `handler(request, **params)` for `methods` on `path`.

        `stream=True`: the handler is called on the loop when the head arrives and answers
        an `Upload` for the body (or a `Response` to refuse it); with middleware, which
        must be able to answer before the handler gets the body, the body is spooled
        first and the handler called inside the chain instead. `methods` is a list of
        names: a bare string (`methods="POST"`) raises TypeError, as in Flask, rather than
        registering the methods "P", "O", "S" and "T".
        """
        if isinstance(methods, str):
            raise TypeError(f"methods must be a list of method names, e.g."
                            f" methods=[{methods!r}], not the string {methods!r}")

        def register(handler: F) -> F:
            _refuse_async(handler, "handler")
            # before anything is registered (a bad template raises RouteError here too)
            _check_parameters(handler, [name for what, name, _kind
                                        in parse_template(path, "str") if what != "lit"], path)
            for method in methods:
                self.router.add(method, path, handler, blocking=not inline and not stream,
                                stream=stream, kwargs=True, default_kind="str")
            return handler
        return register

    def get(self, path: str, *, inline: bool = False) -> Callable[[F], F]:
        return self.route(path, ("GET",), inline=inline)

    def post(self, path: str, *, inline: bool = False, stream: bool = False
             ) -> Callable[[F], F]:
        return self.route(path, ("POST",), inline=inline, stream=stream)

    def put(self, path: str, *, inline: bool = False, stream: bool = False
            ) -> Callable[[F], F]:
        return self.route(path, ("PUT",), inline=inline, stream=stream)

    def patch(self, path: str, *, inline: bool = False) -> Callable[[F], F]:
        return self.route(path, ("PATCH",), inline=inline)

    def delete(self, path: str, *, inline: bool = False) -> Callable[[F], F]:
        return self.route(path, ("DELETE",), inline=inline)

    def middleware(self, fn: Middleware) -> Middleware:
        """Register `fn(request, call_next) -> Response` (decorator)."""
        _refuse_async(fn, "middleware")
        self.middlewares.append(fn)
        for route in self.router.routes:
            route.chain = None  # recomposed on next use
        return fn

    def websocket(self, template: str, *, inline: bool | None = None,
                  subprotocols: Iterable[str] = (), origins: Iterable[str] | None = None
                  ) -> Callable[[HandlerFactory], HandlerFactory]:
        """Decorator: a WebSocket endpoint at `template` (GET), one `factory()` handler per
        session (see reactor.app.websocket). `inline` overrides the handler's own flag."""
        def register(factory: HandlerFactory) -> HandlerFactory:
            endpoint = websocket_endpoint(factory, inline=inline, subprotocols=subprotocols,
                                          origins=origins)

            # The upgrade is answered on the loop, through the middleware like any route
            # (an auth middleware sees it); the parameters stay in `request.params`, as
            # bytes (untyped segments of a WebSocket path are raw, as the handlers expect).
            def upgrade(request: Request, **_params: Any) -> Response:
                return endpoint(request)
            self.router.add("GET", template, upgrade, kwargs=True, default_kind="bytes")
            return factory
        return register

    # ---- serving ------------------------------------------------------------------------
    def open(self, request: Request) -> RouteDispatch:
        return RouteDispatch(self, request, self.router.resolve(request))

    def chain(self, route: Route) -> Callable[[Request], Any]:
        """The route's handler wrapped in the middleware (composed once per route)."""
        chain = route.chain
        if chain is None:
            chain = _endpoint(route, with_middleware=bool(self.middlewares))
            for middleware in reversed(self.middlewares):
                chain = _Link(middleware, chain)
            route.chain = chain
        return chain

    def report_storage(self, event: str, fields: dict[str, Any]) -> None:
        """An upload's expected file-system failure (full, read-only, forbidden) or a resource
        shortage: one line through `on_error`, no traceback (standard error without a
        server)."""
        if self.on_error is not None:
            self.on_error(event, None, fields)
        else:
            handlers.print_error(event, fields)

    def failed(self, request: Request, exc: Exception) -> Response:
        """The answer to an exception from handler or middleware, logged once via on_error
        (the caller re-raises instead when there is no on_error); a resource shortage is a
        503 with one line and no traceback (`handlers.unavailable`)."""
        if isinstance(exc, HTTPError | MissingKey):
            return exc.response()
        if handlers.is_shortage(exc):
            # out of fds or memory (a static file, `Response.file`, a form's spool, the
            # handler's own open): the server's temporary state, not a bug -- 503, one line
            return handlers.unavailable(exc, exc.filename, request, self.report_storage)
        assert self.on_error is not None
        self.on_error("handler-error", exc, {
            "request_id": request.request_id, "conn_id": request.conn_id,
            "method": request.method, "path": request.path})
        return internal_error(request)

    def finish(self, request: Request, response: Response, *, in_worker: bool
               ) -> Response | Offload:
        """Response middleware, run once per response. Today: gzip by `Accept-Encoding`.

        A response whose encoding was already decided (a `Content-Encoding`, or a `Vary`
        naming Accept-Encoding, as the static handler sets) is left as it is, and so is one
        that says `Cache-Control: no-transform` (RFC 9110 7.7 binds proxies; the app asked).
        A strong `ETag` on a compressed body becomes weak (`W/`, as nginx's gzip does): the
        gzip bytes are another representation, and a strong tag must not name both.
        """
        policy = self.compression
        body = response.body
        if not policy.enabled or type(body) is not bytes or len(body) < policy.min_size:
            return response
        status = response.status
        if status < 200 or status in (204, 205, 206, 304):
            return response
        content_type = None
        vary = -1  # the app's own Vary field, which Accept-Encoding joins
        added = False  # VARY_ADDED is there (this object went through `finish` before)
        for index, field in enumerate(response.headers):  # names in any case
            if field is VARY_ADDED:
                added = True
                continue
            name, value = field
            name = name.lower()
            if name == b"content-type":
                content_type = value
            elif name == b"content-encoding" or (
                    name == b"vary" and b"accept-encoding" in value.lower()) or (
                    name == b"cache-control" and b"no-transform" in value.lower()):
                return response  # already decided (never twice), or not ours to change
            elif name == b"vary":
                vary = index
        if content_type not in policy.types:
            return response
        if added:
            pass  # an earlier pass over this same (shared) object added it
        elif vary < 0:
            # a new list, not an append: two pool threads finishing one shared Response at
            # once would append it twice (a new list is the app's own list left alone, too)
            response.headers = [*response.headers, VARY_ADDED]
        else:  # one Vary list, not two field lines, joined on a copy (the app's may be shared)
            name, value = response.headers[vary]
            if value.strip() != b"*":  # "*" already says it varies on everything
                headers = [*response.headers]
                headers[vary] = (name, value + b", Accept-Encoding")
                response = response.replace(headers=headers)
        accept = _accept_encoding(request)
        if accept is None or not accepts_gzip(accept):
            return response
        if in_worker or len(body) <= INLINE_GZIP_MAX_BYTES:
            return _gzip_response(response, policy.level)
        return Offload(_gzip_response, response, policy.level)


def _refuse_async(fn: Callable[..., Any], what: str) -> None:
    """An `async def` would answer a coroutine, never awaited: a 500 on every request. Said
    at registration (start-up) instead."""
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn) or (
            not inspect.isfunction(fn) and inspect.iscoroutinefunction(
                getattr(fn, "__call__", None))):  # noqa: B004 - an async __call__
        name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
        raise TypeError(f"{what} {name} is an async def; reactor runs {what}s as plain"
                        " functions, in its thread pool (or on the loop with inline=True):"
                        " define it with def")


def _check_parameters(handler: Callable[..., Any], names: list[str], path: str) -> None:
    """`handler(request, **params)` for `path`'s parameters, checked at registration: a
    handler that cannot take them (`def user(request, user_id)` for `/users/{id}`) would be
    a 500 on every request."""
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError):  # no signature to read (some C callables): not checked
        return
    try:
        signature.bind(None, **dict.fromkeys(names, ""))
    except TypeError as exc:
        name = getattr(handler, "__qualname__", None) or type(handler).__qualname__
        wanted = ", ".join(names) if names else "no parameters"
        raise TypeError(f"handler {name} cannot be called as handler(request"
                        f"{''.join(f', {n}=...' for n in names)}) for {path!r}"
                        f" ({wanted}): {exc}") from None


class _Link:
    """One middleware bound to the rest of the chain: `link(request)` calls
    `middleware(request, call_next)`."""

    __slots__ = ("call_next", "middleware")

    def __init__(self, middleware: Middleware, call_next: Callable[[Request], Any]) -> None:
        self.middleware = middleware
        self.call_next = call_next

    def __call__(self, request: Request) -> Any:
        result = self.middleware(request, self.call_next)
        if type(result) is Response:
            return result
        return to_response(request, result)


def _endpoint(route: Route, *, with_middleware: bool) -> Callable[[Request], Any]:
    """The handler called the way the route says, its result made a Response. An `Offload`
    (low-level handlers) passes through when nothing wraps the handler; inside middleware it
    is run at once on a pooled route, and refused on an inline one."""
    handler = route.handler
    pooled = route.blocking
    stream = route.stream  # inside middleware: the body is spooled, fed to the Upload here
    with_params = route.kwargs and bool(route.names)

    def endpoint(request: Request) -> Any:
        try:
            result = handler(request, **request.params) if with_params else handler(request)
        except (HTTPError, MissingKey) as exc:
            return exc.response()
        if result.__class__ is Response:
            return result
        if stream and isinstance(result, Upload):
            return _feed_upload(result, request)
        if isinstance(result, Offload):
            if pooled:
                while isinstance(result, Offload):
                    result = result.fn(*result.args)
            elif with_middleware:
                raise TypeError(f"inline route {route.template} answered an Offload inside"
                                " middleware; register it pooled")
            else:
                return result
        return to_response(request, result)
    return endpoint


class RouteDispatch:
    """One request through `App`: its resolved route (or fixed answer) and the middleware
    steps, so that every response passes `App.finish` exactly once.

    The app's code for the request (handler, middleware, a stream route's `Upload`, the
    pieces and `close()` of a streamed body) runs in the request's own `contextvars`
    context, whichever thread runs it: a context variable one request sets (the user a
    middleware found) is never seen by the next request that thread or the loop runs, as
    each asyncio task, or each WSGI request here, has its own."""

    __slots__ = ("app", "context", "found", "ran", "request")

    def __init__(self, app: App, request: Request, found: Route | Response) -> None:
        self.app = app
        self.request = request
        self.found = found
        self.ran = False  # the handler chain (middleware included) has run
        self.context = copy_context()  # of the loop thread, where the app was imported

    def begin(self) -> Upload | Response | None:
        found = self.found
        if isinstance(found, Response):
            # The router's own answer (404, 405, OPTIONS) does not depend on the body unless
            # middleware runs (it may read the body, or answer instead). A client holding its
            # body back for 100 Continue gets the final status now (RFC 9110 10.1.1), rather
            # than a 100 and an upload for nothing; the connection then closes, body unread.
            if not self.app.middlewares and _waits_for_continue(self.request):
                return found
            return None
        request = self.request
        if (found.head_answer is not None and not self.app.middlewares
                and _waits_for_continue(request)):
            answer = found.head_answer(request)  # e.g. a mount's 405: the body cannot change it
            if answer is not None:
                return answer
        if found.stream:
            if self.app.middlewares:
                # The middleware wrap this handler too: one that answers without calling
                # call_next (an auth check) must keep the body from the handler's Upload,
                # which would otherwise have taken (and stored) it before the middleware
                # ran. So the body is spooled, as for a pooled route, and the chain runs;
                # its endpoint feeds the spooled body to the Upload (`_feed_upload`).
                return SpoolThenRun(request, self.app.spool_bytes, self._run_spooled,
                                    self.app.report_storage)
            answer = (self.context.run(found.handler, request, **request.params)
                      if found.kwargs else self.context.run(found.handler, request))
            if isinstance(answer, Offload):
                raise TypeError(f"stream route {found.template} answered an Offload at head"
                                " time")
            if isinstance(answer, Upload):
                return _UploadInContext(answer, self.context)
            return answer
        if found.kwargs and found.blocking:
            length = request.headers.get(b"content-length")
            if length is None or int(length) > self.app.spool_bytes:
                return SpoolThenRun(request, self.app.spool_bytes, self._run_spooled,
                                    self.app.report_storage)
        return None

    def respond(self) -> Response | Offload:
        found = self.found
        request = self.request
        if found.__class__ is Route and not found.blocking and not found.stream:
            # The inline route: the hot path of cheap handlers, kept short.
            self.ran = True
            app = self.app
            run = self.context.run
            try:
                if app.middlewares:
                    result = run(found.chain or app.chain(found), request)
                else:  # no chain to build: the handler itself
                    params = request.params
                    result = (run(found.handler, request, **params)
                              if params and found.kwargs else run(found.handler, request))
                    if result.__class__ is not Response and result.__class__ is not Offload:
                        result = to_response(request, result)
            except Exception as exc:
                if app.on_error is None and not isinstance(exc, HTTPError | MissingKey):
                    raise
                result = app.failed(request, exc)
            if result.__class__ is Offload:  # a low-level handler's continuation
                return Offload(self._in_worker, result)
            body = result.body
            if body.__class__ is not bytes and isinstance(body, StreamBody):
                self._bind(result)
            return app.finish(request, result, in_worker=False)
        if isinstance(found, Response):  # a 404/405/OPTIONS answer of the router
            if self.app.middlewares:
                return Offload(self._answer_in_worker, found)
            return self.app.finish(request, found, in_worker=False)
        if found.stream:  # a body that was not streamed (empty, say): the same steps at once
            if self.app.middlewares:
                return Offload(self.run_in_worker)  # the chain feeds the handler's Upload
            upload = self.begin()
            if not isinstance(upload, Upload):
                assert upload is not None  # a stream route answers an Upload or a Response
                return self.complete(upload)  # refused
            # the upload's steps enter the request's context themselves (`begin`)
            return Offload(self._in_worker, Offload(_feed_upload, upload, request), False)
        return Offload(self.run_in_worker)

    def _run(self, chain: Callable[[Request], Any]) -> Any:
        self.ran = True
        try:
            return self.context.run(chain, self.request)
        except Exception as exc:
            if self.app.on_error is None and not isinstance(exc, HTTPError | MissingKey):
                raise
            return self.app.failed(self.request, exc)

    def run_in_worker(self) -> Response | Offload:
        """In the pool: the whole chain, then the response middleware."""
        found = self.found
        assert isinstance(found, Route)
        request = self.request
        result = self._bind(self._run(self.app.chain(found)))
        if request._extras is not None:  # a parsed form may hold spooled files
            result = release_after(result, request.close_files)
        return self.app.finish(request, result, in_worker=True)

    def _run_spooled(self) -> Response:
        """The body is spooled (see `begin`): run the route here, on the upload's worker."""
        result = self.run_in_worker()
        while isinstance(result, Offload):
            result = result.fn(*result.args)
        return result

    def _answer_in_worker(self, answer: Response) -> Response | Offload:
        result = self._bind(self._run(_fixed_chain(self.app, answer)))
        return self.app.finish(self.request, result, in_worker=True)

    def complete(self, response: Response) -> Response | Offload:
        if not self.ran and self.app.middlewares:  # an upload's answer: middleware see it
            return Offload(self._answer_in_worker, response)
        return self.app.finish(self.request, self._bind(response), in_worker=False)

    def _in_worker(self, offload: Offload, in_context: bool = True) -> Response | Offload:
        """In the pool: a handler's continuation, then the middleware on its answer."""
        try:
            result = (self.context.run(offload.fn, *offload.args) if in_context
                      else offload.fn(*offload.args))
        except Exception as exc:
            if self.app.on_error is None and not isinstance(exc, HTTPError | MissingKey):
                raise
            result = self.app.failed(self.request, exc)
        if isinstance(result, Offload):
            return Offload(self._in_worker, result)
        return self.app.finish(self.request, self._bind(result), in_worker=True)

    def _bind(self, response: Response) -> Response:
        """A streamed body's pieces and `close()` (a generator's code) run in the request's
        context too, on whichever worker the connection has them produced (once)."""
        body = response.body
        if isinstance(body, StreamBody) and body.produce.__class__ is not _InContext:
            response.body = StreamBody(_InContext(self.context, body.produce),
                                       _InContext(self.context, body.close))
        return response


class _InContext:
    """`fn` called in `context` (a request's: see `RouteDispatch`)."""

    __slots__ = ("context", "fn")

    def __init__(self, context: Context, fn: Callable[..., Any]) -> None:
        self.context = context
        self.fn = fn

    def __call__(self, *args: Any) -> Any:
        return self.context.run(self.fn, *args)


class _UploadInContext(Upload):
    """A stream route's `Upload`, its steps run in the request's context (see `begin`)."""

    __slots__ = ("context", "upload")

    def __init__(self, upload: Upload, context: Context) -> None:
        self.upload = upload
        self.context = context

    def start(self) -> Response | None:
        return self.context.run(self.upload.start)

    def write(self, chunk: bytes) -> None:
        self.context.run(self.upload.write, chunk)

    def finish(self) -> Response:
        return self.context.run(self.upload.finish)

    def abort(self) -> None:
        self.context.run(self.upload.abort)


def _fixed_chain(app: App, answer: Response) -> Callable[[Request], Any]:
    chain: Callable[[Request], Any] = lambda _request: answer  # noqa: E731
    for middleware in reversed(app.middlewares):
        chain = _Link(middleware, chain)
    return chain


FEED_BYTES = 256 * 1024
"""The pieces in which a spooled body is fed to a stream route's Upload (`_feed_upload`)."""


def _feed_upload(upload: Upload, request: Request) -> Response:
    """A stream route's Upload given a body the connection did not stream to it (spooled
    for the middleware: see `RouteDispatch.begin`; or empty), handed over as the
    connection's pump would: piece by piece, abort after a refusal or a failure, an
    `UploadRefused` answered with its response."""
    try:
        refused = upload.start()
        if refused is not None:
            upload.abort()  # nothing was written: the body is not wanted
            return refused
        file = request.body_file
        if file is None:
            if request.body:
                upload.write(request.body)
        else:
            file.seek(0)
            while chunk := file.read(FEED_BYTES):
                upload.write(chunk)
        return upload.finish()
    except UploadRefused as exc:  # the Upload's own answer (a full disk's 507, say)
        upload.abort()
        return exc.response
    except BaseException:
        upload.abort()
        raise


def _waits_for_continue(request: Request) -> bool:
    """The request announces `Expect: 100-continue` (ignored in HTTP/1.0, RFC 9110 10.1.1)."""
    if request.version != "1.1":
        return False
    return any(item.strip(b" \t").lower() == b"100-continue"
               for value in request.headers.get_all(b"expect") for item in value.split(b","))


def _accept_encoding(request: Request) -> bytes | None:
    """The Accept-Encoding list; repeated field lines form one list (RFC 9110 5.3)."""
    values = None
    for name, value in request.headers._fields:  # lower-case names: one plain scan
        if name == b"accept-encoding":
            if values is None:
                values = [value]
            else:
                values.append(value)
    if values is None:
        return None
    return values[0] if len(values) == 1 else b", ".join(values)


def _gzip_response(response: Response, level: int) -> Response:
    """The gzip form of `response` as a new Response: the app's own object is left as it
    is (a handler may return the same Response to every client, gzip-capable or not)."""
    body = response.body
    assert isinstance(body, bytes)  # `finish` compresses bytes bodies only
    # A Content-Length the app set counted the identity bytes: the serializer counts anew.
    # A strong ETag named the identity bytes: weak now (RFC 9110 8.8.3).
    headers = [
        (name, b"W/" + value) if lower == b"etag" and value[:2] != b"W/" else (name, value)
        for name, value in response.headers
        if (lower := name.lower()) != b"content-length"]
    headers.append(CONTENT_ENCODING_GZIP)
    return response.replace(headers=headers, body=gzip_bytes(body, level))


def build_app(*, directory: str | None, uploads: bool = True,
              compression: CompressionPolicy | None = None,
              mounts: list[StaticMount] | None = None,
              gzip_cache: GzipCache | None = None,
              open_file_cache_bytes: int = KEEP_BYTES_TOTAL) -> App:
    """The built-in routes of the original challenge, plus static document roots.

    Routes win over mounts, except the empty `GET /` placeholder, which a mount at `/`
    replaces. All mounts share one compressed-file cache (`gzip_cache`, default 64 MiB);
    each keeps up to `open_file_cache_bytes` of small files and gzip bodies with its
    open-file cache.
    """
    app = App(compression=compression)
    mounts = mounts or []
    if not any(mount.prefix == "/" for mount in mounts):
        app.get("/", inline=True)(handlers.root)
    app.get("/echo/{s:bytes}", inline=True)(handlers.echo)
    app.get("/user-agent", inline=True)(handlers.user_agent)
    app.websocket("/ws/echo")(Echo)
    if directory is not None:
        files = handlers.FilesHandler(directory, uploads=uploads, report=app.report_storage)
        app.get("/files/{name:bytes}")(files.get)
        app.route("/files/{name:bytes}", ("POST", "PUT"), stream=True)(files.upload)
        app.delete("/files/{name:bytes}")(files.delete)
    if mounts:
        add_mounts(app, mounts, gzip_cache if gzip_cache is not None else GzipCache(),
                   open_file_cache_bytes)
    return app


def add_mounts(app: App, mounts: list[StaticMount], cache: GzipCache,
               open_file_cache_bytes: int = KEEP_BYTES_TOTAL) -> None:
    """Mount each document root on the app's router, sharing `cache` and its gzip policy.
    A mount with uploads streams PUT bodies: PUT is its stream route; GET stays as it is."""
    policy = app.compression
    for mount in mounts:
        handler = StaticHandler(mount, cache, types=policy.types, gzip_enabled=policy.enabled,
                                level=policy.level, min_size=policy.min_size,
                                keep_bytes=open_file_cache_bytes,
                                report=app.report_storage)
        app.router.mount(mount.prefix, handler,
                         upload_handler=handler.upload if mount.uploads else None,
                         head_answer=handler.answer_at_head)


class FrontApp:
    """Static mounts in front of a hosted app: a path under a mount goes to `front` (an App
    holding only the mounts), everything else to `app` (a native App or a WSGI app)."""

    __slots__ = ("app", "front")

    def __init__(self, front: App, app: Application) -> None:
        self.front = front
        self.app = app

    def open(self, request: Request) -> Dispatch:
        if self.front.router.find_mount(request.path, request.method) is not None:
            return self.front.open(request)
        return self.app.open(request)


def mounted_front(app: Application, mounts: list[StaticMount], *,
                  compression: CompressionPolicy | None = None,
                  gzip_cache: GzipCache | None = None,
                  on_error: ErrorReporter | None = None,
                  open_file_cache_bytes: int = KEEP_BYTES_TOTAL) -> Application:
    """`app` behind the document roots `mounts` (or `app` itself when there are none);
    `on_error` gets the mounts' failures (an upload's full disk, say)."""
    if not mounts:
        return app
    front = App(compression=compression)
    front.on_error = on_error
    add_mounts(front, mounts, gzip_cache if gzip_cache is not None else GzipCache(),
               open_file_cache_bytes)
    return FrontApp(front, app)
