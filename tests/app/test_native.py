"""The native API (`from reactor import App, Request, Response`) served by a real server."""

from __future__ import annotations

import contextvars
import gzip
import http.client
import json
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from reactor import App, HTTPError, Request, Response, Upload, UploadFile
from reactor.app.router import RouteError, Router
from reactor.app.types import FileResponse, Headers, iter_body
from tests.conftest import (
    RawClient,
    RunningServer,
    fetch,
    on_loop,
    read_log,
    request_bytes,
    start_server,
    wait_for_log,
    wait_until,
)


def serve(tmp_path: Path, app: App) -> RunningServer:
    """A real server whose app is `app`, failures logged as `reactor serve --app` does."""
    running = start_server(tmp_path)
    app.on_error = running.server.app_error
    on_loop(running, setattr, running.server.http, "app", app)
    return running


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[App, RunningServer]]:
    app = App()
    running = serve(tmp_path, app)
    yield app, running
    running.stop()


def get(running: RunningServer, target: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    return fetch(running, "GET", target, headers=headers)


# ---- typed path parameters ----------------------------------------------------------------

def typed_app() -> App:
    app = App()

    @app.get("/users/{user_id:int}")
    def by_id(request: Request, user_id: int) -> Response:
        return Response.json({"id": user_id, "type": type(user_id).__name__})

    @app.get("/users/me")
    def me(request: Request) -> Response:
        return Response.text("me")

    @app.get("/users/{name}")
    def by_name(request: Request, name: str) -> Response:
        return Response.json({"name": name})

    @app.get("/price/{amount:float}")
    def price(request: Request, amount: float) -> dict:
        return {"amount": amount}

    @app.get("/things/{key:uuid}")
    def thing(request: Request, key: uuid.UUID) -> dict:
        return {"key": str(key), "type": type(key).__name__}

    @app.get("/raw/{tail:path}")
    def raw(request: Request, tail: str) -> str:
        return tail

    return app


def test_typed_parameters_convert_and_fall_back(tmp_path: Path) -> None:
    running = serve(tmp_path, typed_app())
    try:
        assert json.loads(get(running, "/users/42")[2]) == {"id": 42, "type": "int"}
        assert get(running, "/users/me")[2] == b"me"  # the literal wins
        assert json.loads(get(running, "/users/caf%C3%A9")[2]) == {"name": "café"}
        assert json.loads(get(running, "/price/9.5")[2]) == {"amount": 9.5}
        key = uuid.uuid4()
        assert json.loads(get(running, f"/things/{key}")[2]) == {"key": str(key),
                                                                 "type": "UUID"}
        assert get(running, "/raw/a/b%20c/d")[2] == b"a/b c/d"
        # past 100 digits it is no id (int() itself refuses 4,300): the next route gets it
        digits = "9" * 5000
        assert json.loads(get(running, f"/users/{digits}")[2]) == {"name": digits}
        # values that do not convert are 404s
        for path in ("/price/abc", "/price/1e5", "/things/not-a-uuid", "/users/%FF",
                     "/raw/", "/users/"):
            assert get(running, path)[0] == 404, path
    finally:
        running.stop()


def test_methods_head_405_and_options(served: tuple[App, RunningServer]) -> None:
    app, running = served

    @app.get("/item")
    def read(request: Request) -> Response:
        return Response.text("item body")

    @app.route("/item", methods=["PUT", "DELETE"])
    def write(request: Request) -> Response:
        return Response(204)

    status, headers, body = fetch(running, "HEAD", "/item")
    assert (status, body, headers["Content-Length"]) == (200, b"", "9")
    status, headers, _ = fetch(running, "POST", "/item", b"x")
    assert status == 405 and headers["Allow"] == "DELETE, GET, HEAD, OPTIONS, PUT"
    status, headers, _ = fetch(running, "OPTIONS", "/item")
    assert status == 204 and headers["Allow"] == "DELETE, GET, HEAD, OPTIONS, PUT"
    assert fetch(running, "DELETE", "/item")[0] == 204


# ---- trailing slashes ----------------------------------------------------------------------

def test_a_path_without_its_routes_trailing_slash_is_a_308_there_as_in_flask(
        served: tuple[App, RunningServer]) -> None:
    """werkzeug's strict_slashes: `/users` when only `/users/` exists is a 308 (method and
    body kept) to the path plus "/" and the query; the Location is relative (never built
    from Host); only when the slash route takes the method; never the reverse."""
    app, running = served

    @app.route("/users/", methods=["GET", "POST"])
    def users(request: Request) -> Response:
        return Response.text(f"{request.method} users {request.body.decode()}")

    @app.get("/teams/{team_id:int}/")
    def team(request: Request, team_id: int) -> Response:
        return Response.text(f"team {team_id}")

    @app.post("/items")
    def post_item(request: Request) -> Response:
        return Response.text("posted")

    @app.get("/items/")
    def items(request: Request) -> Response:
        return Response.text("items")

    @app.get("/about")
    def about(request: Request) -> Response:
        return Response.text("about")

    status, headers, body = get(running, "/users?a=1&b=%20+x")
    assert (status, headers["Location"]) == (308, "/users/?a=1&b=%20+x")
    assert body == b"Redirecting to /users/?a=1&b=%20+x\n"
    status, headers, body = fetch(running, "POST", "/users", b"grace")
    assert (status, headers["Location"]) == (308, "/users/")
    status, headers, body = fetch(running, "HEAD", "/users")
    assert (status, headers["Location"], body) == (308, "/users/", b"")
    assert fetch(running, "OPTIONS", "/users")[0] == 308  # Flask: the route takes OPTIONS
    assert get(running, "/us%65rs")[1]["Location"] == "/us%65rs/"  # the client's own escapes
    assert get(running, "/teams/7")[1]["Location"] == "/teams/7/"
    assert get(running, "/teams/seven")[0] == 404  # /teams/seven/ matches nothing either
    assert fetch(running, "PUT", "/users", b"x")[0] == 404  # /users/ does not take PUT
    # /items has a route, not for GET: GET goes to /items/, OPTIONS and DELETE stay
    assert get(running, "/items")[1]["Location"] == "/items/"
    assert fetch(running, "POST", "/items", b"")[2] == b"posted"
    status, headers, _ = fetch(running, "OPTIONS", "/items")
    assert (status, headers["Allow"]) == (204, "OPTIONS, POST")
    assert fetch(running, "DELETE", "/items")[0] == 405
    # never the reverse, and a slash route answers itself
    assert get(running, "/about/")[0] == 404
    assert get(running, "/users/")[::2] == (200, b"GET users ")
    with RawClient.to(running) as client:  # the redirect is an ordinary keep-alive answer
        client.send(request_bytes("POST", "/users", body=b"abc")
                    + request_bytes("POST", "/users/", body=b"abc"))
        assert client.read_response().status == 308
        assert client.read_response().body == b"POST users abc"


def test_a_path_starting_with_two_slashes_is_not_redirected_to_another_host(
        served: tuple[App, RunningServer]) -> None:
    """`//evil.example/` as a Location is a network-path reference: another host."""
    app, running = served

    @app.get("//{host}/")
    def odd(request: Request, host: str) -> Response:
        return Response.text(host)

    assert get(running, "//evil.example/")[2] == b"evil.example"
    status, headers, _ = get(running, "//evil.example")
    assert status == 404 and "Location" not in headers


def test_redirect_slashes_false_keeps_the_404(tmp_path: Path) -> None:
    app = App(redirect_slashes=False)
    app.get("/users/")(lambda request: "users")
    running = serve(tmp_path, app)
    try:
        assert get(running, "/users")[0] == 404
        assert get(running, "/users/")[0] == 200
    finally:
        running.stop()


def test_conflicting_routes_raise_naming_both() -> None:
    app = App()
    app.get("/users/{user_id:int}")(lambda request, user_id: "a")
    with pytest.raises(RouteError) as caught:
        app.get("/users/{uid:int}")(lambda request, uid: "b")
    assert "/users/{uid:int}" in str(caught.value) and "/users/{user_id:int}" in str(
        caught.value)
    app.post("/users/{uid:int}")(lambda request, uid: "c")  # another method is fine
    app.get("/users/{name}")(lambda request, name: "d")  # another type is another shape
    with pytest.raises(RouteError):
        app.get("/a/{x:nope}")(lambda request, x: "e")
    with pytest.raises(RouteError):
        app.get("/a/{x}/{x}")(lambda request, x: "f")


def test_a_thousand_routes_each_resolve_to_their_own_handler() -> None:
    router = Router()
    for index in range(1000):
        router.add("GET", f"/r{index}/items/{{item:int}}", lambda request, i=index: i,
                   kwargs=True, default_kind="str")
        router.add("GET", f"/static{index}", lambda request, i=index: i)
    for index in (0, 499, 999):
        request = Request("GET", f"/r{index}/items/7", "", "1.1", Headers([]))
        route = router.resolve(request)
        assert not isinstance(route, Response)
        assert route.handler(request) == index and request.params == {"item": 7}
        static = router.resolve(Request("GET", f"/static{index}", "", "1.1", Headers([])))
        assert not isinstance(static, Response) and static.handler(request) == index
    missing = router.resolve(Request("GET", "/r5/items/x", "", "1.1", Headers([])))
    assert isinstance(missing, Response) and missing.status == 404


# ---- where handlers and middleware run ------------------------------------------------------

def test_handlers_run_in_the_pool_unless_inline_and_middleware_wrap_them_there(
        served: tuple[App, RunningServer]) -> None:
    app, running = served
    seen: list[tuple[str, str]] = []

    @app.middleware
    def outer(request: Request, call_next) -> Response:  # type: ignore[no-untyped-def]
        seen.append(("outer", threading.current_thread().name))
        response = call_next(request)
        response.headers.append((b"X-Order", b"outer"))
        return response

    @app.middleware
    def inner(request: Request, call_next) -> Response:  # type: ignore[no-untyped-def]
        seen.append(("inner", threading.current_thread().name))
        if request.headers.get("x-deny"):
            return Response.text("denied", 403)  # short-circuit: the handler never runs
        response = call_next(request)
        response.headers.append((b"X-Order", b"inner"))
        return response

    @app.get("/pooled")
    def pooled(request: Request) -> str:
        seen.append(("handler", threading.current_thread().name))
        return "pooled"

    @app.get("/inline", inline=True)
    def inline(request: Request) -> str:
        seen.append(("handler", threading.current_thread().name))
        return "inline"

    loop_thread = running.thread.name
    with RawClient.to(running) as client:
        client.send(request_bytes("GET", "/pooled"))
        response = client.read_response()
        assert response.body == b"pooled"
        assert response.headers("x-order") == ["inner", "outer"]  # registration order
        assert [name for name, _ in seen] == ["outer", "inner", "handler"]
        assert {thread for _, thread in seen} != {loop_thread}
        assert len({thread for _, thread in seen}) == 1  # all three on one worker
        seen.clear()
        client.send(request_bytes("GET", "/inline"))
        assert client.read_response().body == b"inline"
        assert seen == [("outer", loop_thread), ("inner", loop_thread),
                        ("handler", loop_thread)]
        seen.clear()
        client.send(request_bytes("GET", "/pooled", {"X-Deny": "1"}))
        response = client.read_response()
        assert (response.status, response.body) == (403, b"denied")
        assert [name for name, _ in seen] == ["outer", "inner"]
        # the router's own answers pass the middleware too
        client.send(request_bytes("GET", "/nowhere"))
        response = client.read_response()
        assert response.status == 404 and response.headers("x-order") == ["inner", "outer"]


@pytest.mark.expect_log("handler-error")
def test_an_exception_is_a_500_with_the_request_id_and_one_traceback(
        served: tuple[App, RunningServer]) -> None:
    app, running = served

    @app.get("/boom")
    def boom(request: Request) -> Response:
        raise RuntimeError("handler exploded")

    @app.get("/boom-inline", inline=True)
    def boom_inline(request: Request) -> Response:
        raise RuntimeError("inline handler exploded")

    @app.get("/teapot")
    def teapot(request: Request) -> Response:
        raise HTTPError(418, "short and stout")

    with RawClient.to(running) as client:
        for path in ("/boom", "/boom-inline"):
            client.send(request_bytes("GET", path, {"X-Request-ID": f"rid{len(path)}"}))
            response = client.read_response()
            assert response.status == 500
            assert f"request id: rid{len(path)}".encode() in response.body
            assert b"exploded" not in response.body
        client.send(request_bytes("GET", "/teapot"))  # the connection is still usable
        response = client.read_response()
        assert (response.status, response.body) == (418, b"I'm a Teapot: short and stout\n")
    errors = wait_for_log(running.error_log, lambda x: x["event"] == "handler-error", 2)
    assert [e["request_id"] for e in errors] == ["rid5", "rid12"]
    assert "handler exploded" in errors[0]["exception"]
    assert "inline handler exploded" in errors[1]["exception"]
    running.stop()
    # exactly one traceback per failure: nothing else reported it
    lines = read_log(running.error_log)
    assert len([x for x in lines if "exception" in x]) == 2


# ---- Request conveniences -----------------------------------------------------------------

def test_request_query_headers_cookies_json_and_addresses(
        served: tuple[App, RunningServer]) -> None:
    app, running = served

    @app.post("/inspect")
    def inspect(request: Request) -> dict:
        return {
            "tags": request.query_params.get_all("tag"), "page": request.query_params["page"],
            "empty": request.query_params.get("empty"), "missing": request.query_params.get("x"),
            "agent_str": request.headers["User-Agent"],
            "agent_bytes": request.headers[b"User-Agent"].decode(),
            "has_agent": "user-agent" in request.headers,
            "cookies": request.cookies, "json": request.json(),
            "remote": request.remote_addr, "client": request.client_addr,
            "scheme": request.scheme, "request_id": request.request_id,
            "url": request.url,
        }

    body = json.dumps({"a": [1, 2]}).encode()
    status, _, raw = fetch(
        running, "POST", "/inspect?tag=a&tag=b%20c&page=2&empty=", body,
        {"User-Agent": "probe/1", "Cookie": 'sid=abc; theme="dark"; bad',
         "Content-Type": "application/json", "X-Request-ID": "req-1"})
    assert status == 200, raw
    seen = json.loads(raw)
    assert seen == {
        "tags": ["a", "b c"], "page": "2", "empty": "", "missing": None,
        "agent_str": "probe/1", "agent_bytes": "probe/1", "has_agent": True,
        "cookies": {"sid": "abc", "theme": "dark"}, "json": {"a": [1, 2]},
        "remote": "127.0.0.1", "client": "127.0.0.1", "scheme": "http",
        "request_id": "req-1", "url": f"http://{running.host}:{running.port}/inspect?"
                                      "tag=a&tag=b%20c&page=2&empty=",
    }
    status, _, raw = fetch(running, "POST", "/inspect?page=1", b"{not json",
                           {"Content-Type": "application/json", "User-Agent": "probe/1"})
    assert status == 400 and b"not valid JSON" in raw
    # a client's bad JSON is a 400 however it is bad, never a 500 with a traceback
    status, _, raw = fetch(running, "POST", "/inspect?page=1", b"[" * 100_000,
                           {"Content-Type": "application/json", "User-Agent": "probe/1"})
    assert (status, raw) == (400, b"Bad Request: the body's JSON nests too deeply\n")
    status, _, raw = fetch(running, "POST", "/inspect", b"{}", {"User-Agent": "probe/1"})
    assert (status, raw) == (400, b"Bad Request: missing parameter 'page'\n")


def test_forms_urlencoded_and_multipart_with_a_spooled_file(
        served: tuple[App, RunningServer]) -> None:
    app, running = served
    app.spool_bytes = 64 * 1024  # bodies past this go to disk as they arrive
    seen: dict[str, object] = {}

    @app.post("/form")
    def form(request: Request) -> dict:
        data = request.form()
        seen["spooled"] = request.body_file is not None
        out: dict[str, object] = {"fields": data.items()}
        upload = data.files.get("doc")
        seen["upload"] = upload
        if upload is not None:
            content = upload.read()
            out["file"] = [upload.filename, upload.content_type, upload.size,
                           content[:5].decode(), content == payload]
        return out

    status, _, raw = fetch(running, "POST", "/form", b"name=Ada+L&lang=py&lang=c",
                           {"Content-Type": "application/x-www-form-urlencoded"})
    assert json.loads(raw) == {"fields": [["name", "Ada L"], ["lang", "py"], ["lang", "c"]]}
    assert seen["spooled"] is False

    payload = bytes(range(256)) * 4096 + b"\r\n--not-the-boundary\r\n"  # 1 MiB and a bit
    boundary = "----reactor-test-7d2"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\n"
            f"report\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"doc\";"
            f" filename=\"../../etc/r;1.bin\"\r\nContent-Type: application/x-thing\r\n\r\n"
            ).encode() + payload + f"\r\n--{boundary}--\r\n".encode()
    status, _, raw = fetch(running, "POST", "/form", body,
                           {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 200, raw
    assert json.loads(raw) == {"fields": [["title", "report"]],
                               "file": ["r;1.bin", "application/x-thing", len(payload),
                                        payload[:5].decode("latin-1"), True]}
    assert seen["spooled"] is True
    upload = seen["upload"]
    assert isinstance(upload, UploadFile) and upload.file.closed  # released after the response
    status, _, raw = fetch(running, "POST", "/form", b"--x\r\nbroken",
                           {"Content-Type": "multipart/form-data; boundary=x"})
    assert status == 400
    status, _, raw = fetch(running, "POST", "/form", b"<a/>", {"Content-Type": "text/xml"})
    assert status == 415
    urlencoded = {"Content-Type": "application/x-www-form-urlencoded"}
    status, _, raw = fetch(running, "POST", "/form", b"&".join([b"a=1"] * 1000), urlencoded)
    assert status == 200 and len(json.loads(raw)["fields"]) == 1000
    status, _, raw = fetch(running, "POST", "/form", b"a&" * 500_000, urlencoded)
    assert (status, raw) == (400, b"Bad Request: more than 1000 form fields\n")


def test_a_chunked_upload_is_spooled_and_read_whole(served: tuple[App, RunningServer]
                                                    ) -> None:
    app, running = served
    app.spool_bytes = 1000

    @app.put("/blob")
    def blob(request: Request) -> dict:
        return {"length": request.body_length(), "in_memory": request.body_file is None,
                "same": request.read() == b"0123456789" * 1000}

    chunks = b"".join(b"%x\r\n%s\r\n" % (1000, b"0123456789" * 100) for _ in range(10))
    with RawClient.to(running) as client:
        client.send(request_bytes("PUT", "/blob", {"Transfer-Encoding": "chunked"},
                                  chunks + b"0\r\n\r\n"))
        response = client.read_response()
        assert json.loads(response.body) == {"length": 10000, "in_memory": False,
                                             "same": True}


# ---- Response helpers -----------------------------------------------------------------------

def test_response_helpers(served: tuple[App, RunningServer], tmp_path: Path) -> None:
    app, running = served
    document = tmp_path / "report.txt"
    document.write_bytes(b"0123456789" * 10000)
    closed = threading.Event()

    @app.get("/text")
    def text(request: Request) -> Response:
        return Response.text("héllo " * 100).set_cookie("sid", "s1", max_age=60,
                                                         httponly=True)

    @app.get("/bytes")
    def data(request: Request) -> Response:
        return Response.binary(b"\x00\x01", content_type="image/x-raw")

    @app.get("/go")
    def go(request: Request) -> Response:
        return Response.redirect("/dest/ü", 303).delete_cookie("sid")

    @app.get("/file")
    def file(request: Request) -> Response:
        return Response.file(document, download_name="rapport été.txt")

    @app.get("/stream")
    def stream(request: Request) -> Response:
        def pieces() -> Iterator[bytes]:
            try:
                for index in range(3):
                    yield b"piece %d\n" % index
                yield ""  # type: ignore[misc]  # skipped: an empty piece must not end it
                yield "done\n"  # type: ignore[misc]
            finally:
                closed.set()
        return Response.stream(pieces(), content_type="text/plain")

    status, headers, body = get(running, "/text", **{"Accept-Encoding": "gzip"})
    assert gzip.decompress(body).decode() == "héllo " * 100  # the gzip middleware applies
    assert headers["Set-Cookie"] == "sid=s1; Max-Age=60; Path=/; HttpOnly; SameSite=Lax"
    status, headers, body = get(running, "/bytes")
    assert (body, headers["Content-Type"]) == (b"\x00\x01", "image/x-raw")
    status, headers, body = get(running, "/go")
    assert (status, headers["Location"]) == (303, "/dest/%C3%BC")
    assert headers["Set-Cookie"].startswith("sid=; Max-Age=0; Expires=Thu, 01 Jan 1970")
    status, headers, body = get(running, "/file", Range="bytes=10-19")
    assert (status, body, headers["Content-Range"]) == (206, b"0123456789",
                                                        "bytes 10-19/100000")
    assert headers["Content-Disposition"] == (
        "attachment; filename=\"rapport ete.txt\"; filename*=UTF-8''rapport%20%C3%A9t%C3%A9.txt")
    status, headers, body = get(running, "/file")
    assert (status, len(body), headers["Content-Type"]) == (200, 100000,
                                                            "text/plain; charset=utf-8")
    status, _, _ = get(running, "/file", **{"If-None-Match": headers["ETag"]})
    assert status == 304
    document.unlink()
    assert get(running, "/file")[0] == 404
    status, headers, body = get(running, "/stream")
    assert headers["Transfer-Encoding"] == "chunked"
    assert body == b"piece 0\npiece 1\npiece 2\ndone\n"
    assert closed.wait(5)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), [1, float("-inf")]])
def test_json_answers_are_strict_json(value: object) -> None:
    # RFC 8259 has no NaN/Infinity and a browser's JSON.parse refuses them: the app's error
    with pytest.raises(ValueError):
        Response.json({"x": value})
    assert Response.json({"x": 1.5, "y": "é"}).body == '{"x":1.5,"y":"é"}'.encode()


def test_a_stream_piece_that_is_not_bytes_ends_the_stream_instead_of_sending_nuls() -> None:
    body = iter_body([b"a", bytearray(b"b"), memoryview(b"c"), 5, b"never"])
    assert [body.produce() for _ in range(3)] == [b"a", b"b", b"c"]
    with pytest.raises(TypeError, match="a stream piece is bytes or str, not int"):
        body.produce()  # bytes(5) would have been five NULs on the wire


def test_a_streamed_body_is_closed_when_the_client_goes_away(
        served: tuple[App, RunningServer]) -> None:
    app, running = served
    closed = threading.Event()

    @app.get("/forever")
    def forever(request: Request) -> Response:
        def pieces() -> Iterator[bytes]:
            try:
                while True:
                    yield b"x" * 65536
            finally:
                closed.set()
        return Response.stream(pieces())

    with RawClient.to(running) as client:
        client.send(request_bytes("GET", "/forever"))
        client.read_until(b"\r\n\r\n")
        client.read_exactly(100000)
    assert closed.wait(5)  # the generator's close() ran although it never finished
    assert wait_until(lambda: on_loop(running, lambda: len(running.server.http.connections))
                      == 0)


def test_builtin_routes_are_registered_through_the_same_api(tmp_path: Path) -> None:
    running = start_server(tmp_path)
    try:
        app = running.server.app
        assert isinstance(app, App)
        routes = {(r.method, r.template): r for r in app.router.routes}
        assert {("GET", "/"), ("GET", "/echo/{s:bytes}"), ("GET", "/user-agent")} <= set(routes)
        assert all(r.kwargs for r in routes.values())  # App.get, as a user would
        status, _, body = fetch(running, "GET", "/echo/%FFok")
        assert (status, body) == (200, b"\xffok")  # bytes parameters: any octets echo
    finally:
        running.stop()


def test_http_connection_survives_many_requests(served: tuple[App, RunningServer]) -> None:
    app, running = served

    @app.get("/n/{n:int}", inline=True)
    def number(request: Request, n: int) -> dict:
        return {"n": n * 2}

    connection = http.client.HTTPConnection(running.host, running.port, timeout=5)
    try:
        for n in range(20):
            connection.request("GET", f"/n/{n}")
            assert json.loads(connection.getresponse().read()) == {"n": n * 2}
    finally:
        connection.close()


@pytest.mark.expect_log("handler-error")
def test_middleware_see_upload_answers_and_their_own_failures_are_500s(
        served: tuple[App, RunningServer]) -> None:
    app, running = served
    received: list[int] = []

    class Counting(Upload):
        def write(self, chunk: bytes) -> None:
            received.append(len(chunk))

        def finish(self) -> Response:
            return Response.text(f"{sum(received)} bytes", 201)

    @app.post("/raw", stream=True)  # answers an Upload at head time
    def raw(request: Request) -> Upload:
        return Counting()

    @app.middleware
    def stamp(request: Request, call_next) -> Response:  # type: ignore[no-untyped-def]
        if request.headers.get("x-break"):
            raise RuntimeError("middleware exploded")
        response = call_next(request)
        response.headers.append((b"X-Stamped", b"yes"))
        return response

    with RawClient.to(running) as client:
        client.send(request_bytes("POST", "/raw", body=b"x" * 100000))
        response = client.read_response()
        assert (response.status, response.body) == (201, b"100000 bytes")
        assert response.header("x-stamped") == "yes"
        client.send(request_bytes("GET", "/nowhere", {"X-Break": "1",
                                                      "X-Request-ID": "mw-1"}))
        response = client.read_response()
        assert response.status == 500 and b"request id: mw-1" in response.body
    errors = wait_for_log(running.error_log, lambda x: x["event"] == "handler-error")
    assert errors[0]["request_id"] == "mw-1"
    assert "middleware exploded" in errors[0]["exception"]


def test_a_middleware_that_answers_itself_keeps_the_body_from_a_stream_routes_upload(
        served: tuple[App, RunningServer]) -> None:
    """An auth middleware answered 401 to an upload without a key, but the stream route's
    handler had been called at head time and its Upload had taken the whole body (and
    finished: stored it) before the middleware ran at all. The middleware wrap a stream
    route's handler as any other: the body is spooled, and only a call_next feeds it to
    the Upload."""
    app, running = served
    events: list[str] = []

    class Saving(Upload):
        def start(self) -> Response | None:
            events.append("start")
            return None

        def write(self, chunk: bytes) -> None:
            events.append(f"write {len(chunk)}")

        def finish(self) -> Response:
            events.append("finish")
            return Response.text("stored", 201)

    @app.put("/blob/{name}", stream=True)
    def store(request: Request, name: str) -> Upload:
        events.append(f"handler {name}")
        return Saving()

    @app.middleware
    def require_key(request: Request, call_next) -> Response:  # type: ignore[no-untyped-def]
        if request.headers.get("x-key") != "secret":
            return Response.text("who are you?", 401)
        return call_next(request)

    app.spool_bytes = 64 * 1024
    body = b"x" * 300_000  # past the in-memory spool: fed from its file
    with RawClient.to(running) as client:
        client.send(request_bytes("PUT", "/blob/a", body=body))
        assert client.read_response().status == 401
        client.send(request_bytes("PUT", "/blob/b", {"Expect": "100-continue",
                                                     "Content-Length": "5"}))
        assert client.read_until(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        client.send(b"hello")
        assert client.read_response().status == 401
        client.send(request_bytes("PUT", "/blob/c", {"Content-Length": "0"}))
        assert client.read_response().status == 401
    assert events == []
    with RawClient.to(running) as client:
        client.send(request_bytes("PUT", "/blob/d", {"X-Key": "secret"}, body=body))
        response = client.read_response()
        assert (response.status, response.body) == (201, b"stored")
        client.send(request_bytes("PUT", "/blob/e", {"X-Key": "secret",
                                                     "Content-Length": "0"}))
        assert client.read_response().status == 201
    assert [event for event in events if not event.startswith("write")] == [
        "handler d", "start", "finish", "handler e", "start", "finish"]
    assert [event for event in events if event.startswith("write")] == [
        "write 262144", "write 37856"]  # the spool file, in FEED_BYTES pieces


def test_a_context_variable_one_request_sets_is_not_seen_by_the_next(tmp_path: Path) -> None:
    """Handlers and middleware ran in their thread's own context: a ContextVar a middleware
    set for one request (the user it authenticated) was still set for every later request
    that pool thread (or, inline, the loop) ran, an anonymous one included, and a streamed
    body's generator read whichever request's value its worker had last seen. Each request
    runs in its own context, as an asyncio task or a WSGI request here does."""
    user: contextvars.ContextVar[str] = contextvars.ContextVar("user", default="nobody")
    app = App()

    @app.middleware
    def who(request: Request, call_next) -> Response:  # type: ignore[no-untyped-def]
        name = request.headers.get("x-user")
        if name:
            user.set(name)
        return call_next(request)

    @app.get("/pooled")
    def pooled(request: Request) -> str:
        return user.get()

    @app.get("/inline", inline=True)
    def inline(request: Request) -> str:
        return user.get()

    @app.get("/stream")
    def stream(request: Request) -> Response:
        return Response.stream(iter_user())

    def iter_user() -> Iterator[str]:
        yield user.get()
        user.set("set by the generator")  # seen by its next piece, by no other request
        yield f" {user.get()}"

    class Upload_(Upload):
        def write(self, chunk: bytes) -> None:
            pass

        def finish(self) -> Response:
            return Response.text(user.get())

    uploads = App()  # no middleware: the handler answers at head time, the steps later

    @uploads.put("/up", stream=True)
    def up(request: Request) -> Upload:
        user.set(request.headers.get("x-user", "nobody"))
        return Upload_()

    running = start_server(tmp_path, server={"pool_threads": 1})
    try:
        app.on_error = uploads.on_error = running.server.app_error
        on_loop(running, setattr, running.server.http, "app", app)
        for path in ("/pooled", "/inline"):
            assert fetch(running, "GET", path, headers={"X-User": "alice"})[2] == b"alice"
            assert get(running, path)[2] == b"nobody", path
        carol = fetch(running, "GET", "/stream", headers={"X-User": "carol"})
        assert carol[2] == b"carol set by the generator"
        assert get(running, "/stream")[2] == b"nobody set by the generator"
        assert get(running, "/pooled")[2] == b"nobody"
        on_loop(running, setattr, running.server.http, "app", uploads)
        assert fetch(running, "PUT", "/up", b"x", {"X-User": "dave"})[2] == b"dave"
        assert fetch(running, "PUT", "/up", b"x")[2] == b"nobody"
    finally:
        running.stop()


def test_a_refused_expect_100_continue_is_answered_at_once_unless_middleware_may_change_it(
        served: tuple[App, RunningServer]) -> None:
    app, running = served

    @app.get("/only-get")
    def only_get(request: Request) -> Response:
        return Response.text("got")

    head = request_bytes("POST", "/only-get", {"Expect": "100-continue",
                                               "Content-Length": "5"})
    with RawClient.to(running) as client:  # no middleware: the 405 cannot change, sent now
        client.send(head)
        response = client.read_response()
        assert response.status == 405 and b"100 Continue" not in response.raw
        assert client.is_closed_by_peer()

    seen: list[bytes] = []

    @app.middleware
    def echo_unrouted(request: Request, call_next) -> Response:  # type: ignore[no-untyped-def]
        response = call_next(request)
        if response.status == 405:  # a middleware that answers from the body instead
            seen.append(request.body)
            return Response.text(f"posted {request.body.decode()}")
        return response

    with RawClient.to(running) as client:  # middleware may: the body is asked for and read
        client.send(head)
        assert client.read_until(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        client.send(b"hello")
        response = client.read_response()
        assert (response.status, response.body) == (200, b"posted hello")
    assert seen == [b"hello"]


def test_a_file_answer_keeps_its_content_type_in_ranges(
        served: tuple[App, RunningServer], tmp_path: Path) -> None:
    """`Response.file(path, content_type=...)` is the type of every answer about the file:
    a <video> asks `Range: bytes=0-` first, and its 206 said the type guessed from the name."""
    app, running = served
    clip = tmp_path / "clip-7"  # no extension: guessed as application/octet-stream
    clip.write_bytes(bytes(range(256)) * 40)

    @app.get("/clip")
    def video(request: Request) -> Response:
        return Response.file(clip, content_type="video/mp4")

    status, headers, _ = get(running, "/clip")
    assert (status, headers["Content-Type"]) == (200, "video/mp4")
    status, headers, body = get(running, "/clip", Range="bytes=0-")
    assert (status, headers["Content-Type"], len(body)) == (206, "video/mp4", 10240)
    status, headers, body = get(running, "/clip", Range="bytes=0-1,256-257")
    assert status == 206 and headers["Content-Type"].startswith("multipart/byteranges;")
    assert body.count(b"Content-Type: video/mp4\r\n") == 2
    assert b"octet-stream" not in body


def test_a_205_goes_out_without_the_content_an_app_gave_it(
        served: tuple[App, RunningServer]) -> None:
    # RFC 9110 15.3.6: a server MUST NOT generate content in a 205 (Reset Content). An app
    # that gives one a body anyway -- bytes, gzip-eligible or not, or a stream -- must not
    # have it sent: the answer says Content-Length: 0 and the connection carries on.
    app, running = served

    @app.get("/reset")
    def reset(request: Request) -> Response:
        return Response.text("form saved, clear it", 205)

    @app.get("/reset-stream")
    def reset_stream(request: Request) -> Response:
        return Response.stream(iter([b"one", b"two"]), 205, content_type="text/plain")

    @app.get("/after")
    def after(request: Request) -> Response:
        return Response.text("next")

    with RawClient.to(running) as client:
        for target, headers in [("/reset", {}), ("/reset", {"Accept-Encoding": "gzip"}),
                                ("/reset-stream", {})]:
            client.send(request_bytes("GET", target, headers)
                        + request_bytes("GET", "/after"))
            response = client.read_response()
            assert response.status == 205, response.raw
            assert response.header("content-length") == "0", response.raw
            assert response.header("transfer-encoding") is None, response.raw
            assert response.header("content-encoding") is None, response.raw
            following = client.read_response()  # the app's bytes are not in front of it
            assert following.status == 200, following.raw
            assert following.body == b"next"
        client.send(request_bytes("HEAD", "/reset"))
        response = client.read_response(head=True)
        assert response.status == 205 and response.header("content-length") == "0"


@pytest.mark.parametrize(("name", "header"), [
    ("rapport été.txt",
     "attachment; filename=\"rapport ete.txt\"; filename*=UTF-8''rapport%20%C3%A9t%C3%A9.txt"),
    ("a/b é.txt",  # "/" is no attr-char
     "attachment; filename=\"a/b e.txt\"; filename*=UTF-8''a%2Fb%20%C3%A9.txt"),
    ("x\udcff y.txt",  # a lone surrogate
     "attachment; filename=\"x y.txt\"; filename*=UTF-8''x%3F%20y.txt"),
    ("a#b! é", "attachment; filename=\"a#b! e\"; filename*=UTF-8''a#b!%20%C3%A9"),
    ('say "hi".txt', "attachment; filename=\"say _hi_.txt\"; filename*=UTF-8''say%20%22hi%22.txt"),
    ("日本.pdf", "attachment; filename*=UTF-8''%E6%97%A5%E6%9C%AC.pdf"),  # no ".pdf" fallback
    ("€", "attachment; filename*=UTF-8''%E2%82%AC"),
    ("plain.txt", 'attachment; filename="plain.txt"'),
])
def test_download_name_is_an_rfc8187_value(name: str, header: str) -> None:
    from reactor.app.responses import _disposition
    assert _disposition(name) == header.encode("ascii")


def test_a_download_name_that_is_not_ascii_has_an_ascii_filename_first(
        served: tuple[App, RunningServer], tmp_path: Path) -> None:
    """`Response.file(path, download_name="résumé.pdf")` sent only `filename*`, which
    `curl -OJ` does not read: it saved the download under the URL's last segment. RFC 6266
    appendix D: a plain `filename` as the fallback, then `filename*` (as werkzeug sends)."""
    app, running = served
    path = tmp_path / "cv.bin"
    path.write_bytes(b"%PDF")

    @app.get("/cv")
    def cv(request: Request) -> object:
        return Response.file(path, download_name="résumé.pdf")

    status, headers, body = get(running, "/cv")
    assert (status, body) == (200, b"%PDF")
    assert headers["Content-Disposition"] == (
        "attachment; filename=\"resume.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf")
    if shutil.which("curl") is not None:
        saved = tmp_path / "curl"
        saved.mkdir()
        done = subprocess.run(["curl", "-sS", "--max-time", "10", "-OJ",
                               f"{running.url}/cv"],
                              cwd=saved, capture_output=True, timeout=30)
        assert done.returncode == 0, done.stderr
        assert [entry.name for entry in saved.iterdir()] == ["resume.pdf"]


def test_methods_given_as_one_string_is_refused_at_registration() -> None:
    """`methods="POST"` (for `methods=["POST"]`) registered the methods "P", "O", "S", "T":
    every POST was a 405 saying `Allow: O, OPTIONS, P, S, T`. Flask refuses it too."""
    app = App()
    with pytest.raises(TypeError, match=r"methods=\['POST'\]"):
        app.route("/items", methods="POST")
    assert app.router.routes == []
    app.route("/items", methods=("POST", "put"))(lambda request: "ok")
    assert sorted(route.method for route in app.router.routes) == ["POST", "PUT"]


def test_a_non_ascii_or_space_literal_matches_as_clients_send_it(
        served: tuple[App, RunningServer]) -> None:
    """`@app.get("/café")` was a 404 for every client: a request target is ASCII, so
    browsers and curl send `/caf%C3%A9`, which never equalled the template (Flask and
    Starlette match it)."""
    app, running = served

    @app.get("/café")
    def cafe(request: Request) -> str:
        return "cafe"

    @app.get("/menu/{day}/crème brûlée")
    def dessert(request: Request, day: str) -> str:
        return f"dessert {day}"

    @app.get("/100%")
    def percent(request: Request) -> str:
        return "percent"

    assert get(running, "/caf%C3%A9")[2] == b"cafe"
    assert get(running, "/caf%c3%a9")[2] == b"cafe"  # escapes in either case
    assert get(running, "/menu/lundi/cr%C3%A8me%20br%C3%BBl%C3%A9e")[2] == b"dessert lundi"
    assert get(running, "/100%25")[2] == b"percent"
    with RawClient.to(running) as client:  # one connection, the route remembered
        for _ in range(2):
            client.send(request_bytes("GET", "/menu/mardi/cr%C3%A8me%20br%C3%BBl%C3%A9e"))
            assert client.read_response().body == b"dessert mardi"
    status, headers, _ = fetch(running, "POST", "/caf%C3%A9", b"")
    assert (status, headers["Allow"]) == (405, "GET, HEAD, OPTIONS")
    assert get(running, "/caf%C3%A8")[0] == 404
    with pytest.raises(RouteError):  # one route, whichever form it was written in
        app.get("/café")(cafe)


@pytest.mark.parametrize("kind", ["handler", "middleware"])
def test_an_async_def_is_refused_at_registration(tmp_path: Path, kind: str) -> None:
    """An `async def` handler answered every request with a 500 (a coroutine is no
    response) and left "coroutine ... was never awaited" on standard error: now the
    registration, at start-up, says so."""
    app = App()

    async def fetch_user(request: Request) -> str:
        return "never"

    class AsyncCallable:
        async def __call__(self, request: Request) -> str:
            return "never"

    register = app.get("/user") if kind == "handler" else app.middleware
    with pytest.raises(TypeError, match="fetch_user is an async def"):
        register(fetch_user)
    with pytest.raises(TypeError, match="AsyncCallable is an async def"):
        register(AsyncCallable())
    assert app.router.routes == [] and app.middlewares == []
    app.get("/user")(lambda request: "plain")  # a plain function still registers
    running = serve(tmp_path, app)
    try:
        assert get(running, "/user")[::2] == (200, b"plain")
    finally:
        running.stop()


def test_a_headers_list_the_app_reuses_is_not_changed_by_the_server(
        served: tuple[App, RunningServer]) -> None:
    """`Response(200, HEADERS, body)` with a module-level HEADERS: the server appended its
    `Vary: Accept-Encoding` to the app's own list, so from the second request on the body
    looked "already decided" and went out uncompressed (and over HTTPS the HSTS field was
    appended to the list once per request with HSTS on). Like werkzeug's and Starlette's, a Response
    takes a copy."""
    app, running = served
    shared = [(b"Content-Type", b"text/plain")]

    @app.get("/shared")
    def page(request: Request) -> Response:
        return Response(200, shared, b"hello " * 200)

    for _ in range(3):
        status, headers, body = get(running, "/shared", **{"Accept-Encoding": "gzip"})
        assert (status, headers.get("Content-Encoding")) == (200, "gzip")
        assert gzip.decompress(body) == b"hello " * 200
    assert shared == [(b"Content-Type", b"text/plain")]


def test_a_response_object_the_app_returns_every_time_is_not_gzipped_in_place(
        served: tuple[App, RunningServer]) -> None:
    """`OK = Response.text(...)` at module level, `return OK` in the handler: the first
    client that accepted gzip had the server compress OK's own body, and every later client,
    one sending `Accept-Encoding: identity` too, got the gzip bytes."""
    app, running = served
    text = "hello " * 200
    shared = Response.text(text)

    @app.get("/ok")
    def ok(request: Request) -> Response:
        return shared

    status, headers, body = get(running, "/ok", **{"Accept-Encoding": "gzip"})
    assert (status, headers.get("Content-Encoding")) == (200, "gzip")
    assert gzip.decompress(body) == text.encode()
    status, headers, body = get(running, "/ok", **{"Accept-Encoding": "identity"})
    assert (status, headers.get("Content-Encoding"), body) == (200, None, text.encode())
    # and the next gzip client still gets gzip: the Vary the server added to `shared` the
    # first time is known as its own (it made the answer look "already decided" from then on)
    status, headers, body = get(running, "/ok", **{"Accept-Encoding": "gzip"})
    assert (status, headers.get("Content-Encoding"), headers.get("Vary")) == (
        200, "gzip", "Accept-Encoding")
    assert gzip.decompress(body) == text.encode()
    assert shared.body == text.encode()
    assert shared.headers == [(b"Content-Type", b"text/plain; charset=utf-8"),
                              (b"Vary", b"Accept-Encoding")]  # once, and true of it


@pytest.mark.parametrize("inline", [False, True], ids=["pooled", "inline"])
def test_a_missing_header_the_handler_indexes_is_a_400_not_a_logged_500(
        served: tuple[App, RunningServer], inline: bool) -> None:
    """`request.headers["Authorization"]` of a request without one was a KeyError: a 500 and
    a traceback in the error log for a client's omission. It is a 400 naming the field, as
    a missing query parameter or form field is (and as in Flask)."""
    app, running = served

    @app.get("/me", inline=inline)
    def me(request: Request) -> str:
        return request.headers["Authorization"] + request.headers[b"x-tenant"].decode()

    assert get(running, "/me", Authorization="Bearer t", **{"X-Tenant": "7"})[::2] == (
        200, b"Bearer t7")
    status, _, body = get(running, "/me")
    assert (status, body) == (400, b"Bad Request: missing header 'Authorization'\n")
    status, _, body = get(running, "/me", Authorization="Bearer t")
    assert (status, body) == (400, b"Bad Request: missing header 'x-tenant'\n")
    assert "x" not in Headers([(b"y", b"1")])  # and it is still a KeyError to code that asks
    with pytest.raises(KeyError):
        Headers([])["x"]


def test_a_file_answer_takes_the_apps_own_fields_instead_of_doubling_them(
        served: tuple[App, RunningServer], tmp_path: Path) -> None:
    """`Response.file(path, headers=[(b"Content-Type", ...), (b"ETag", ...)])` went out
    with two Content-Types and two ETags (the file's, then the app's), fields a response
    carries once. The app's own replace the file's; its Content-Type applies in ranges."""
    app, running = served
    data = tmp_path / "export.dat"
    data.write_bytes(b"a,b\n1,2\n" * 10)

    @app.get("/export")
    def export(request: Request) -> Response:
        return Response.file(data, headers=[
            (b"Content-Type", b"text/csv; charset=utf-8"), (b"ETag", b'"v7"'),
            (b"Cache-Control", b"no-store"), (b"Set-Cookie", b"a=1"),
            (b"Set-Cookie", b"b=2")])

    def fields(*extra: str) -> list[tuple[str, str]]:
        with RawClient.to(running) as client:
            client.send(request_bytes("GET", "/export", dict(
                header.split(": ") for header in extra)))
            response = client.read_response()
        assert response.status == (206 if extra else 200)
        return [(name.lower(), value) for name, value in response.fields
                if name.lower() in ("content-type", "etag", "cache-control", "set-cookie")]

    assert fields() == [("content-type", "text/csv; charset=utf-8"), ("etag", '"v7"'),
                        ("cache-control", "no-store"), ("set-cookie", "a=1"),
                        ("set-cookie", "b=2")]
    assert fields("Range: bytes=0-3")[0] == ("content-type", "text/csv; charset=utf-8")


def test_a_file_answers_conditions_against_the_validators_the_app_gave_it(
        served: tuple[App, RunningServer], tmp_path: Path) -> None:
    """`Response.file(path, headers=[(b"ETag", b'"v7"')])` sent `ETag: "v7"`, but
    If-None-Match, If-Match and If-Range were compared with the file's own tag, which the
    client never saw: its `If-None-Match: "v7"` got the whole body again (200, never a
    304), and its `If-Range: "v7"` the whole file instead of the range. As werkzeug's
    send_file(etag=...), the app's ETag and Last-Modified are the validators."""
    app, running = served
    data = tmp_path / "export.dat"
    data.write_bytes(b"a,b\n1,2\n" * 10)
    stamp = "Wed, 21 Oct 2015 07:28:00 GMT"

    @app.get("/export")
    def export(request: Request) -> Response:
        return Response.file(data, headers=[(b"ETag", b'"v7"')])

    @app.get("/dated")
    def dated(request: Request) -> Response:
        return Response.file(data, headers=[(b"Last-Modified", stamp.encode())])

    def answer(path: str, **fields: str) -> tuple[int, bytes, str | None]:
        with RawClient.to(running) as client:
            client.send(request_bytes("GET", path, {k.replace("_", "-"): v
                                                    for k, v in fields.items()}))
            response = client.read_response()
        return response.status, response.body, response.header("ETag")

    assert answer("/export")[2] == '"v7"'
    assert answer("/export", If_None_Match='"v7"') == (304, b"", '"v7"')
    assert answer("/export", If_Match='"v7"')[0] == 200
    assert answer("/export", If_Match='"other"')[0] == 412
    assert answer("/export", Range="bytes=0-3", If_Range='"v7"')[:2] == (206, b"a,b\n")
    assert answer("/dated", If_Modified_Since=stamp)[0] == 304
    assert answer("/dated", If_Modified_Since="Tue, 20 Oct 2015 07:28:00 GMT")[0] == 200


def test_a_content_type_in_a_helpers_headers_replaces_the_helpers_own(
        served: tuple[App, RunningServer]) -> None:
    """`Response.json(problem, 400, headers=[(b"Content-Type", b"application/problem+json")])`
    (RFC 9457; `json` has no content_type argument) went out with two Content-Types,
    `application/json` first; so did an HTTPError or a `Response.text` given one."""
    app, running = served
    problem = (b"Content-Type", b"application/problem+json")

    @app.get("/problem")
    def json_problem(request: Request) -> Response:
        return Response.json({"title": "out of stock"}, 409, headers=[problem])

    @app.get("/raised")
    def raised(request: Request) -> Response:
        raise HTTPError(409, "out of stock", headers=[(b"content-type", b"text/x-reason")])

    @app.get("/csv")
    def csv(request: Request) -> Response:
        return Response.text("a,b\n", headers=[(b"Content-Type", b"text/csv"),
                                               (b"X-Rows", b"1")])

    @app.get("/plain")
    def plain(request: Request) -> Response:
        return Response.binary(b"\x00", headers=[(b"X-Rows", b"0")])

    def types(path: str) -> list[str]:
        with RawClient.to(running) as client:
            client.send(request_bytes("GET", path))
            response = client.read_response()
        return [value for name, value in response.fields if name.lower() == "content-type"]

    assert types("/problem") == ["application/problem+json"]
    assert types("/raised") == ["text/x-reason"]
    assert types("/csv") == ["text/csv"]
    assert types("/plain") == ["application/octet-stream"]  # no type of its own: the helper's


def test_replace_copies_every_field_of_the_subclass_and_leaves_the_original() -> None:
    """The server's additions (Vary, HSTS, a gzip body) go to `replace`'s copy: it keeps the
    class (a HealthResponse stays out of the access log, a FileResponse keeps its path)."""
    original = FileResponse("/srv/a.txt", "text/plain", "a.txt", [(b"X-A", b"1")])
    copied = original.replace(headers=[(b"X-B", b"2")])
    assert type(copied) is FileResponse
    assert (copied.path, copied.content_type, copied.download_name, copied.status) == (
        "/srv/a.txt", "text/plain", "a.txt", 200)
    assert (copied.headers, original.headers) == ([(b"X-B", b"2")], [(b"X-A", b"1")])

    class Tagged(Response):  # an app's subclass without __slots__
        pass

    tagged = Tagged(201, None, b"old")
    tagged.tag = "t"  # type: ignore[attr-defined]
    renewed = tagged.replace(body=b"new")
    assert (type(renewed), renewed.status, renewed.body, renewed.tag) == (  # type: ignore[attr-defined]
        Tagged, 201, b"new", "t")
    assert tagged.body == b"old"


def test_a_handler_that_cannot_take_its_routes_parameters_is_refused_at_registration(
        ) -> None:
    """`def user(request, user_id)` for `/users/{id}` was a TypeError, a logged 500, on every
    request; a handler that needs a parameter its route does not have, the same. Said at
    registration (start-up, one line from `reactor serve`) instead; nothing is registered."""
    app = App()

    def user(request: Request, user_id: str) -> str:
        return user_id

    with pytest.raises(TypeError, match=r"user cannot be called as handler\(request, id=...\)"
                                        r" for '/users/\{id\}'"):
        app.get("/users/{id}")(user)
    with pytest.raises(TypeError, match=r"for '/users' \(no parameters\)"):
        app.get("/users")(user)
    assert app.router.routes == []

    def by_id(request: Request, id: str, page: str = "1") -> str:
        return id + page

    def anything(request: Request, **params: str) -> str:
        return ",".join(params)

    app.get("/users/{id}")(by_id)
    app.get("/tags/{tag}/{n:int}")(anything)
    app.get("/plain")(lambda request: "ok")
    assert len(app.router.routes) == 3
