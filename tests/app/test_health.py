"""Health endpoints: answered before any app, readiness states, kept out of the access log."""

from __future__ import annotations

from pathlib import Path

import pytest

from reactor.app.health import DRAINING, SERVING, STARTING, HealthApp, Readiness
from reactor.app.types import FunctionApp, Headers, Request, Response
from tests.conftest import fetch, read_log, start_server, wait_for_log


def answer(app: HealthApp, path: str, method: str = "GET") -> Response:
    request = Request(method, path, "", "HTTP/1.1", Headers([]))
    response = app.open(request).respond()
    assert isinstance(response, Response)
    return response


def behind() -> FunctionApp:
    return FunctionApp(lambda request: Response(299, [], b"app"))


@pytest.mark.parametrize(("state", "status"), [(STARTING, 503), (SERVING, 200),
                                               (DRAINING, 503)])
def test_readiness_states(state: str, status: int) -> None:
    app = HealthApp(behind(), Readiness(state))
    response = answer(app, "/readyz")
    assert (response.status, response.body) == (status, state.encode() + b"\n")
    assert response.header(b"cache-control") == b"no-store"
    assert answer(app, "/livez").status == 200  # live whatever the readiness


def test_other_paths_and_methods() -> None:
    app = HealthApp(behind(), Readiness(SERVING))
    assert answer(app, "/readyzz").status == 299
    assert answer(app, "/").status == 299
    refused = answer(app, "/livez", "POST")
    assert refused.status == 405 and refused.header(b"allow") == b"GET, HEAD, OPTIONS"
    assert answer(app, "/readyz", "HEAD").status == 200


def test_options_is_answered_as_on_a_route(tmp_path: Path) -> None:
    """OPTIONS on a health path: 204 with Allow, as the router answers it on a GET route."""
    running = start_server(tmp_path)
    try:
        on_route = fetch(running, "OPTIONS", "/")
        assert on_route[0] == 204
        for path in ("/livez", "/readyz"):
            status, headers, body = fetch(running, "OPTIONS", path)
            assert (status, body) == (204, b"")
            assert headers["Allow"] == on_route[1]["Allow"] == "GET, HEAD, OPTIONS"
    finally:
        running.stop()


def test_configured_paths_and_off() -> None:
    app = HealthApp(behind(), Readiness(SERVING), livez="/_live", readyz="")
    assert answer(app, "/_live").status == 200
    assert answer(app, "/livez").status == 299
    assert answer(app, "/readyz").status == 299


def test_served_before_the_app_and_not_logged(tmp_path: Path) -> None:
    running = start_server(tmp_path)
    try:
        assert fetch(running, "GET", "/livez")[0] == 200
        assert fetch(running, "GET", "/readyz")[:3:2] == (200, b"serving\n")
        assert fetch(running, "GET", "/nothing-here")[0] == 404  # a marker line after them
        lines = wait_for_log(running.access_log, lambda x: x.get("event") == "request")
        assert [line["path"] for line in lines] == ["/nothing-here"]
    finally:
        running.stop()


def test_logged_when_configured(tmp_path: Path) -> None:
    running = start_server(tmp_path, health={"log": True, "readyz": "/ready"})
    try:
        assert fetch(running, "GET", "/ready")[0] == 200
        assert fetch(running, "GET", "/readyz")[0] == 404  # that path is the app's again
        lines = wait_for_log(running.access_log, lambda x: x.get("event") == "request", 2)
        assert [(x["path"], x["status"]) for x in lines] == [("/ready", 200), ("/readyz", 404)]
    finally:
        running.stop()


def test_drain_flips_readiness_and_keeps_accepting(tmp_path: Path) -> None:
    running = start_server(tmp_path, timeouts={"drain_s": 30.0})
    try:
        assert fetch(running, "GET", "/readyz")[0] == 200
        running.call(running.server.stop)
        # at once 503, and new connections are still accepted and served while draining
        status, _, body = fetch(running, "GET", "/readyz")
        assert (status, body) == (503, b"draining\n")
        assert fetch(running, "GET", "/livez")[0] == 200
        assert fetch(running, "GET", "/nothing")[0] == 404
        assert running.thread.is_alive()
        running.call(running.server.stop)  # a second stop request ends the drain early
        running.thread.join(10)
        assert not running.thread.is_alive()
        events = [line["event"] for line in read_log(running.error_log)]
        assert events.index("draining") < events.index("stopping")
    finally:
        running.stop()
