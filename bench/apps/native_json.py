"""The trivial JSON route as a native reactor app, on the loop (`inline`) and in the pool."""

from __future__ import annotations

from reactor import App, Request, Response

MESSAGE = {"message": "Hello, World!"}

inline = App()
pooled = App()


@inline.get("/json", inline=True)
def json_inline(request: Request) -> Response:
    return Response.json(MESSAGE)


@pooled.get("/json")
def json_pooled(request: Request) -> Response:
    return Response.json(MESSAGE)
