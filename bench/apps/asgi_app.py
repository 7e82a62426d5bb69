"""Raw ASGI peer app (no framework), served by uvicorn with httptools + uvloop.

The served directory comes from the ``BENCH_WWW`` environment variable. Access log:
uvicorn's own ``uvicorn.access`` logger (stdout, redirected to a file by the harness).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from common import (
    ECHO_PREFIX,
    FILES_PREFIX,
    TEXT_TYPE,
    content_type,
    gzip_bytes,
    resolve_file,
    wants_gzip,
    www_dir,
)

Send = Callable[[dict], Awaitable[None]]
WWW = www_dir()


async def app(scope: dict, receive: Callable[[], Awaitable[dict]], send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path: str = scope["path"]
    if scope["method"] != "GET":
        await respond(send, 405, TEXT_TYPE, b"method not allowed\n")
    elif path.startswith(ECHO_PREFIX):
        await respond(send, 200, TEXT_TYPE, path[len(ECHO_PREFIX) :].encode())
    elif path.startswith(FILES_PREFIX) and (
        found := resolve_file(WWW, path[len(FILES_PREFIX) :])
    ):
        body = found.read_bytes()
        extra: list[tuple[bytes, bytes]] = []
        accept = dict(scope["headers"]).get(b"accept-encoding")
        if wants_gzip(found, accept.decode("latin-1") if accept else None):
            body = gzip_bytes(body)
            extra = [(b"content-encoding", b"gzip"), (b"vary", b"Accept-Encoding")]
        await respond(send, 200, content_type(found), body, extra)
    else:
        await respond(send, 404, TEXT_TYPE, b"not found\n")


async def respond(
    send: Send, status: int, ctype: str, body: bytes, extra: list | None = None
) -> None:
    headers = [(b"content-type", ctype.encode()), (b"content-length", str(len(body)).encode())]
    headers += extra or []
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
