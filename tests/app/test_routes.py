"""The challenge's routes over a real socket, and the router on its own (no sockets)."""

from __future__ import annotations

import uuid

import pytest

from reactor.app.router import RouteError, Router
from reactor.app.types import Headers, Request, Response
from tests.conftest import RawClient, fetch, request_bytes

# ---- the routes over the wire ------------------------------------------------------------------

def test_root_is_200_with_an_empty_body(running_server):
    status, headers, body = fetch(running_server, "GET", "/")
    assert (status, body) == (200, b"")
    assert headers["Content-Length"] == "0"


@pytest.mark.parametrize(("target", "expected"), [
    ("/echo/abc", b"abc"),
    ("/echo/hello%20world", b"hello world"),
    ("/echo/a%2Fb", b"a/b"),
    ("/echo/%E2%9C%93", "\u2713".encode()),
    ("/echo/100%25", b"100%"),
    ("/echo/plus+sign", b"plus+sign"),
    ("/echo/abc?ignored=1", b"abc"),
    ("/echo/%00%ff", b"\x00\xff"),
])
def test_echo_returns_the_decoded_segment_as_text(running_server, target, expected):
    status, headers, body = fetch(running_server, "GET", target)
    assert status == 200
    assert headers["Content-Type"] == "text/plain"
    assert headers["Content-Length"] == str(len(expected))
    assert body == expected


@pytest.mark.parametrize("target", ["/echo/", "/echo", "/echo/a/b", "/echoes/x", "/ECHO/x",
                                    "/nope", "/user-agent/x", "/files", "/files/"])
def test_unknown_paths_are_404(running_server, target):
    status, headers, body = fetch(running_server, "GET", target)
    assert status == 404
    assert headers["Content-Type"].startswith("text/plain")
    assert body.startswith(b"Not Found")


def test_user_agent_is_returned(running_server):
    status, headers, body = fetch(running_server, "GET", "/user-agent",
                                  headers={"User-Agent": "foobar/1.2.3 (test)"})
    assert status == 200
    assert headers["Content-Type"] == "text/plain"
    assert body == b"foobar/1.2.3 (test)"


def test_a_fragment_a_client_sent_is_not_part_of_the_path(running_server):
    with RawClient.to(running_server) as client:
        client.send(request_bytes("GET", "/echo/kept#dropped"))
        assert client.read_response().body == b"kept"


def test_absolute_form_target_is_routed_on_its_path(running_server):
    with RawClient.to(running_server) as client:
        client.send(request_bytes("GET", "http://test/echo/absolute"))
        assert client.read_response().body == b"absolute"


@pytest.mark.parametrize(("method", "target", "allow"), [
    ("POST", "/echo/x", "GET, HEAD, OPTIONS"),
    ("PUT", "/", "GET, HEAD, OPTIONS"),
    ("DELETE", "/user-agent", "GET, HEAD, OPTIONS"),
    ("PATCH", "/files/x", "DELETE, GET, HEAD, OPTIONS, POST, PUT"),
])
def test_wrong_method_is_405_with_allow(running_server, method, target, allow):
    status, headers, _ = fetch(running_server, method, target, body=b"")
    assert status == 405
    assert headers["Allow"] == allow


@pytest.mark.parametrize(("target", "allow"), [
    ("/", "GET, HEAD, OPTIONS"),
    ("/echo/x", "GET, HEAD, OPTIONS"),
    ("/files/x", "DELETE, GET, HEAD, OPTIONS, POST, PUT"),
])
def test_options_is_204_with_allow(running_server, target, allow):
    with RawClient.to(running_server) as client:
        client.send(request_bytes("OPTIONS", target) + request_bytes("GET", "/echo/next"))
        response = client.read_response()
        assert response.status == 204
        assert response.header("allow") == allow
        assert response.header("content-length") is None
        assert client.read_response().body == b"next"  # a 204 has no body


def test_server_wide_options(running_server):
    with RawClient.to(running_server) as client:
        client.send(request_bytes("OPTIONS", "*"))
        response = client.read_response()
    assert response.status == 204
    # every method some route takes (the files routes: PUT and DELETE too), not a fixed list
    assert response.header("allow") == "DELETE, GET, HEAD, OPTIONS, POST, PUT"


def test_server_wide_options_follows_the_routes():
    router = Router()
    router.get("/a", handler_a)
    answer = router.resolve(make_request("OPTIONS", "*"))
    assert (answer.status, answer.header(b"allow")) == (204, b"GET, HEAD, OPTIONS")
    router.mount("/static", handler_b, upload_handler=handler_a)
    answer = router.resolve(make_request("OPTIONS", "*"))
    assert answer.header(b"allow") == b"DELETE, GET, HEAD, OPTIONS, PUT"


@pytest.mark.parametrize("target", ["/", "/echo/x", "/nope"])
def test_unknown_method_is_501(running_server, target):
    with RawClient.to(running_server) as client:
        client.send(request_bytes("BREW", target))
        response = client.read_response()
        assert response.status == 501
        client.send(request_bytes("GET", "/echo/after"))  # the connection stays usable
        assert client.read_response().body == b"after"


# ---- the router without sockets --------------------------------------------------------------

def make_request(method: str, path: str) -> Request:
    return Request(method, path, "", "1.1", Headers([]))


def handler_a(_request: Request) -> Response:
    return Response(200, [], b"a")


def handler_b(_request: Request) -> Response:
    return Response(200, [], b"b")


@pytest.fixture
def router() -> Router:
    router = Router()
    router.get("/", handler_a)
    router.get("/items/{item_id}", handler_a)
    router.post("/items/{item_id}", handler_b, blocking=True)
    router.get("/items/{item_id}/parts/{part}", handler_b)
    router.get("/static/{rest:path}", handler_b)
    return router


def test_router_matches_static_and_parameter_routes(router):
    route = router.resolve(make_request("GET", "/"))
    assert route.handler is handler_a and not route.blocking
    request = make_request("GET", "/items/a%20b")
    route = router.resolve(request)
    assert route.handler is handler_a
    assert request.params == {"item_id": b"a b"}
    request = make_request("GET", "/items/7/parts/x%2Fy")
    assert router.resolve(request).handler is handler_b
    assert request.params == {"item_id": b"7", "part": b"x/y"}


def test_router_marks_blocking_routes(router):
    route = router.resolve(make_request("POST", "/items/1"))
    assert route.handler is handler_b and route.blocking


def test_router_path_parameter_takes_the_rest(router):
    request = make_request("GET", "/static/css/site.css")
    assert router.resolve(request).handler is handler_b
    assert request.params == {"rest": b"css/site.css"}


def test_router_head_falls_back_to_get(router):
    assert router.resolve(make_request("HEAD", "/items/1")).handler is handler_a


@pytest.mark.parametrize("path", ["/nope", "/items", "/items/", "/items/1/2", "/static/"])
def test_router_404(router, path):
    answer = router.resolve(make_request("GET", path))
    assert isinstance(answer, Response) and answer.status == 404


def test_router_405_lists_the_allowed_methods(router):
    answer = router.resolve(make_request("DELETE", "/items/1"))
    assert answer.status == 405
    assert answer.header(b"allow") == b"GET, HEAD, OPTIONS, POST"


def test_405_and_options_list_the_methods_of_every_route_matching_the_path():
    # two parameter routes match /items/5: Allow is the union (RFC 9110 15.5.6, 10.2.1)
    router = Router()
    router.get("/items/{item_id:int}", handler_a)
    router.add("POST", "/items/{name:str}", handler_b)
    router.add("PUT", "/items/{rest:path}", handler_b)
    assert router.resolve(make_request("POST", "/items/5")).handler is handler_b
    for method, status in (("DELETE", 405), ("OPTIONS", 204)):
        answer = router.resolve(make_request(method, "/items/5"))
        assert (answer.status, answer.header(b"allow")) == (
            status, b"GET, HEAD, OPTIONS, POST, PUT"), method
        # a path only the wider routes match lists only theirs
        answer = router.resolve(make_request(method, "/items/x"))
        assert (answer.status, answer.header(b"allow")) == (
            status, b"OPTIONS, POST, PUT"), method


def test_escaped_unreserved_characters_match_as_the_characters_themselves():
    """RFC 3986 6.2.2.2: `/%71` and `/q` are the same URI; a literal segment and a typed
    parameter see through such escapes, a reserved one (`%2F`) stays a part of a segment."""
    router = Router()
    router.get("/q", handler_a)
    router.get("/items/{item_id:int}", handler_b)
    router.get("/files/{name}", handler_a)
    assert router.resolve(make_request("GET", "/%71")).handler is handler_a
    request = make_request("GET", "/%69tems/%35")
    assert router.resolve(request).handler is handler_b and request.params == {"item_id": 5}
    request = make_request("GET", "/files/a%2fb%7e")
    assert router.resolve(request).handler is handler_a
    assert request.params == {"name": b"a/b~"}  # one segment: the escaped slash stays in it
    assert request.path == "/files/a%2fb%7e"  # the request (and its log line) keeps the raw path
    assert router.resolve(make_request("GET", "/%2571")).status == 404  # %25 is "%", not a q


def test_float_and_uuid_parameters_take_only_finite_numbers_and_the_two_uuid_forms():
    router = Router()
    router.get("/price/{amount:float}", handler_a)
    router.get("/things/{key:uuid}", handler_a)
    router.get("/things/{name:str}", handler_b)  # what is no uuid falls through to here
    accepted = {
        "/price/" + "9" * 300: float("9" * 300), "/price/0.5": 0.5,
        "/things/0123456789abcdef0123456789ABCDEF": uuid.UUID(int=0x123456789ABCDEF << 64
                                                              | 0x123456789ABCDEF),
        "/things/01234567-89AB-cdef-0123-456789abcdef": uuid.UUID(
            "0123456789abcdef0123456789abcdef"),
    }
    for path, value in accepted.items():
        request = make_request("GET", path)
        assert router.resolve(request).handler is handler_a, path
        assert list(request.params.values()) == [value], path
    assert router.resolve(make_request("GET", "/price/" + "9" * 400)).status == 404  # inf
    for key in ("+123456789abcdef0123456789abcdef", "-123456789abcdef0123456789abcdef",
                "----0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef----",
                "0123-4567-89abcdef0123-456789abcdef", "{123456789abcdef0123456789abcdef}",
                "0x23456789abcdef0123456789abcdef",
                "0123456789_bcdef0123456789abcdef"):
        request = make_request("GET", f"/things/{key}")
        assert router.resolve(request).handler is handler_b, key


def test_router_options_and_unknown_methods(router):
    answer = router.resolve(make_request("OPTIONS", "/"))
    assert (answer.status, answer.header(b"allow")) == (204, b"GET, HEAD, OPTIONS")
    assert router.resolve(make_request("BREW", "/")).status == 501
    assert router.resolve(make_request("BREW", "/nope")).status == 501
    assert router.resolve(make_request("OPTIONS", "*")).status == 204


@pytest.mark.parametrize("template", ["no-slash", "/a/{bad-name}", "/a/x{y}",
                                      "/{rest:path}/tail", "/a/{x:nope}"])
def test_router_refuses_bad_templates(template):
    with pytest.raises(RouteError):
        Router().get(template, handler_a)


def test_router_refuses_a_route_registered_twice(router):
    with pytest.raises(RouteError):
        router.get("/items/{item_id}", handler_b)
    router.add("put", "/items/{item_id}", handler_b)  # another method is fine
    assert router.resolve(make_request("PUT", "/items/1")).handler is handler_b


def test_a_mounted_path_asked_again_resolves_as_the_first_time_and_later_changes_win() -> None:
    """Mount answers are remembered per path like route matches, and forgotten the same way."""
    router = Router()
    router.mount("/assets", handler_a)
    first, again = (make_request("GET", "/assets/a%20b.css") for _ in range(2))
    assert router.resolve(first) is router.resolve(again)
    assert first.params == again.params == {"path": b"/a b.css"}
    first.params["path"] = again.params["path"] = b"changed"  # each request owns its params
    third = make_request("GET", "/assets/a%20b.css")
    assert router.resolve(third).handler is handler_a and third.params == {"path": b"/a b.css"}
    assert router.resolve(make_request("HEAD", "/assets/a%20b.css")).handler is handler_a
    router.mount("/assets/a%20b.css", handler_b)  # a longer prefix takes it from now on
    assert router.resolve(make_request("GET", "/assets/a%20b.css")).handler is handler_b
    router.get("/assets/{name}", handler_a)  # and a route wins over any mount
    routed = make_request("GET", "/assets/a%20b.css")
    assert router.resolve(routed).handler is handler_a and routed.params == {"name": b"a b.css"}


def test_a_path_asked_again_resolves_as_the_first_time_and_routes_added_later_win(router):
    """Matches are remembered per path; a later route (or method) is seen at once."""
    first, again = make_request("GET", "/items/7"), make_request("GET", "/items/7")
    assert router.resolve(first) is router.resolve(again)
    assert first.params == again.params == {"item_id": b"7"}
    again.params["item_id"] = b"changed"  # each request owns its params
    third = make_request("GET", "/items/7")
    router.resolve(third)
    assert third.params == {"item_id": b"7"}
    assert router.resolve(make_request("POST", "/items/7")).handler is handler_b
    assert router.resolve(make_request("GET", "/items/7")).handler is handler_a
    router.get("/items/{n:int}", handler_b)  # an int parameter is tried before a segment
    later = make_request("GET", "/items/7")
    assert router.resolve(later).handler is handler_b and later.params == {"n": 7}
    answer = router.resolve(make_request("DELETE", "/items/8"))
    assert isinstance(answer, Response) and answer.status == 405
    router.add("DELETE", "/items/{item_id}", handler_a)
    assert router.resolve(make_request("DELETE", "/items/8")).handler is handler_a
