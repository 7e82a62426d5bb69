"""A native reactor app: typed routes and two middleware.

Serve it from the repository root with:

    reactor serve --app-dir examples --app native_app:app
"""

from __future__ import annotations

import time
from collections.abc import Callable

from reactor import App, HTTPError, Request, Response

app = App()

USERS: dict[int, dict[str, object]] = {1: {"id": 1, "name": "Ada"}, 2: {"id": 2, "name": "Alan"}}
API_KEY = "let-me-in"


@app.middleware
def timing(request: Request, call_next: Callable[[Request], Response]) -> Response:
    """Outermost: how long the rest took, as a Server-Timing field."""
    started = time.perf_counter()
    response = call_next(request)
    elapsed_ms = (time.perf_counter() - started) * 1000
    response.headers.append((b"Server-Timing", f"app;dur={elapsed_ms:.2f}".encode()))
    return response


@app.middleware
def require_key(request: Request, call_next: Callable[[Request], Response]) -> Response:
    """Writes need an API key; without one, answer at once (the handler never runs)."""
    if request.method in ("POST", "PUT", "DELETE") and request.headers.get("x-api-key") != API_KEY:
        return Response.json({"error": "missing or wrong X-API-Key"}, 401)
    return call_next(request)


@app.get("/hello/{name}", inline=True)  # cheap: runs on the event loop
def hello(request: Request, name: str) -> str:
    return f"Hello, {name}!\n"


@app.get("/users/{user_id:int}")  # /users/abc is a 404: "abc" is not an int
def show_user(request: Request, user_id: int) -> dict[str, object]:
    user = USERS.get(user_id)
    if user is None:
        raise HTTPError(404, f"no user {user_id}")
    return user


@app.get("/users")
def list_users(request: Request) -> Response:
    limit = request.query_params.get("limit", "10")
    if not limit.isdecimal():  # the client's mistake is a 400 that says so, not a 500
        raise HTTPError(400, "limit must be a whole number")
    return Response.json(list(USERS.values())[:int(limit)])


@app.post("/users")
def create_user(request: Request) -> Response:
    data = request.json()  # a body that is not JSON is a 400 already
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise HTTPError(400, 'send a JSON object with a "name" string')
    new_id = max(USERS) + 1
    USERS[new_id] = user = {"id": new_id, "name": data["name"]}
    return Response.json(user, 201, headers=[(b"Location", f"/users/{new_id}".encode())])


@app.get("/docs/")  # a "directory" URL: /docs (no slash) answers 308 to /docs/, as in Flask
def docs(request: Request) -> Response:
    return Response.html("<h1>Docs</h1>\n")
