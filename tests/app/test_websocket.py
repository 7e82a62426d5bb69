"""The WebSocket API of the built-in App: @app.websocket routes with parameters, handler
callbacks (pool or inline, in order), on_close codes, broadcast, origins, subprotocols."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from reactor.app.application import App
from reactor.app.types import Headers, Request
from reactor.app.websocket import WebSocket, WebSocketHandler, WebSocketUpgrade, broadcast
from reactor.proto.websocket import Close, Message
from tests.conftest import RunningServer, fetch, on_loop, start_server, wait_until
from tests.wsclient import HandshakeRefused, WsClient

ROOMS: dict[str, list[WebSocket]] = {}
EVENTS: list[tuple[str, object]] = []
LOCK = threading.Lock()


class Chat(WebSocketHandler):
    """Everyone in /chat/{room} gets every message of the room (pool threads)."""

    def on_open(self) -> None:
        room = self.ws.params["room"].decode()
        with LOCK:
            ROOMS.setdefault(room, []).append(self.ws)
            members = list(ROOMS[room])
        self.ws.send(f"joined {room} as #{len(members)}")

    def on_message(self, data: str | bytes) -> None:
        room = self.ws.params["room"].decode()
        with LOCK:
            members = list(ROOMS[room])
        broadcast(members, data)

    def on_close(self, code: int, reason: str) -> None:
        room = self.ws.params["room"].decode()
        with LOCK:
            ROOMS[room].remove(self.ws)
        EVENTS.append(("close", (room, code, reason)))


class Recorder(WebSocketHandler):
    """Records where and in which order callbacks ran."""

    def on_open(self) -> None:
        EVENTS.append(("open", threading.current_thread().name))

    def on_message(self, data: str | bytes) -> None:
        EVENTS.append(("message", data))
        if data == "close please":
            self.ws.close(4000, "as asked")

    def on_close(self, code: int, reason: str) -> None:
        EVENTS.append(("close", (code, reason)))


class Failing(WebSocketHandler):
    inline = True

    def on_message(self, data: str | bytes) -> None:
        raise RuntimeError("handler bug")


class BadClose(WebSocketHandler):
    inline = True

    def on_message(self, data: str | bytes) -> None:
        try:
            self.ws.close(int(data))  # a code no peer may accept: raises here, in the caller
        except ValueError as exc:
            self.ws.send(f"refused: {exc}")
            self.ws.close(4000, "app chose")


@pytest.fixture
def app_server(tmp_path: Path) -> Iterator[RunningServer]:
    ROOMS.clear()
    EVENTS.clear()
    running = start_server(tmp_path, websocket={"ping_interval_s": 0.0})

    def register() -> None:
        app = running.server.app
        app.websocket("/chat/{room}")(Chat)
        app.websocket("/record")(Recorder)
        app.websocket("/inline", inline=True)(Recorder)
        app.websocket("/failing")(Failing)
        app.websocket("/bad-close")(BadClose)
        app.websocket("/strict", origins=["https://ok.example"],
                      subprotocols=["v2", "v1"])(Recorder)
    on_loop(running, register)
    yield running
    running.stop()


def connect(running: RunningServer, path: str, **kw: object) -> WsClient:
    return WsClient(running.host, running.port, path, **kw)  # type: ignore[arg-type]


def test_websocket_route_answers_an_upgrade_marker() -> None:
    app = App()
    app.websocket("/a/{x}", inline=True)(Recorder)
    request = Request("GET", "/a/1", "", "1.1", Headers([]))
    response = app.open(request).respond()
    assert response.status == 101  # type: ignore[union-attr]
    upgrade = response.upgrade  # type: ignore[union-attr]
    assert isinstance(upgrade, WebSocketUpgrade) and upgrade.inline
    assert upgrade.factory is Recorder and request.params == {"x": b"1"}


def test_chat_room_broadcast(app_server: RunningServer) -> None:
    with connect(app_server, "/chat/lobby") as alice, connect(app_server, "/chat/lobby") as bob:
        assert repr(alice.recv()) == repr(Message("joined lobby as #1", 0))
        assert repr(bob.recv()) == repr(Message("joined lobby as #2", 0))
        with connect(app_server, "/chat/other") as carol:
            carol.recv()
            alice.send("hi all")
            for member in (alice, bob):
                event = member.recv()
                assert isinstance(event, Message) and event.data == "hi all"
            carol.send(b"elsewhere")
            event = carol.recv()
            assert isinstance(event, Message) and event.data == b"elsewhere"
            assert isinstance(carol.close(1000, "bye"), Close)
        assert wait_until(lambda: ("close", ("other", 1000, "bye")) in EVENTS)


def test_callbacks_in_order_in_the_pool(app_server: RunningServer) -> None:
    with connect(app_server, "/record") as ws:
        for i in range(20):
            ws.send(f"m{i}")
        ws.send("close please")
        event = ws.recv()
        assert isinstance(event, Close) and (event.code, event.reason) == (4000, "as asked")
        ws.send_raw(ws.encoder.close(4000))
        assert ws.is_closed_by_peer()
    assert wait_until(lambda: any(kind == "close" for kind, _ in EVENTS))
    assert EVENTS[0][0] == "open" and EVENTS[0][1] != "reactor-test-server"
    assert [data for kind, data in EVENTS if kind == "message"] == [
        *(f"m{i}" for i in range(20)), "close please"]
    assert EVENTS[-1] == ("close", (4000, "as asked"))


def test_inline_handler_runs_on_the_loop(app_server: RunningServer) -> None:
    with connect(app_server, "/inline") as ws:
        ws.send("x")
        ws.shutdown()  # no Close frame: 1006
    assert wait_until(lambda: any(kind == "close" for kind, _ in EVENTS))
    assert EVENTS[0] == ("open", "reactor-test-server")
    assert EVENTS[-1] == ("close", (1006, ""))


@pytest.mark.expect_log("websocket-handler-error")
def test_handler_error_closes_1011_and_is_logged(app_server: RunningServer) -> None:
    with connect(app_server, "/failing") as ws:
        ws.send("boom")
        event = ws.recv()
        assert isinstance(event, Close) and event.code == 1011
    assert wait_until(lambda: "websocket-handler-error" in app_server.error_log.read_text())


@pytest.mark.parametrize("code", ["999", "1005", "2000", "5000"])
def test_a_close_code_no_peer_may_accept_raises_in_the_app(app_server: RunningServer,
                                                           code: str) -> None:
    with connect(app_server, "/bad-close") as ws:
        ws.send(code)
        refused = ws.recv()
        assert isinstance(refused, Message) and refused.data.startswith(
            f"refused: close code {code} cannot be sent")
        close = ws.recv()
        assert isinstance(close, Close) and (close.code, close.reason) == (4000, "app chose")


def test_origin_and_subprotocol(app_server: RunningServer) -> None:
    with pytest.raises(HandshakeRefused) as info:
        connect(app_server, "/strict", headers={"Origin": "https://evil.example"})
    assert info.value.status == 403
    with connect(app_server, "/strict", headers={"Origin": "https://ok.example",
                                                  "Sec-WebSocket-Protocol": "v1, v2"}) as ws:
        assert b"Sec-WebSocket-Protocol: v1" in ws.head


class Unmakeable(WebSocketHandler):
    def __init__(self) -> None:
        raise RuntimeError("cannot make a handler")


@pytest.mark.expect_log("websocket-handler-error")
def test_handler_that_cannot_be_made_closes_1011(app_server: RunningServer) -> None:
    on_loop(app_server, lambda: app_server.server.app.websocket("/unmakeable")(Unmakeable))
    with connect(app_server, "/unmakeable") as ws:
        event = ws.recv()
        assert isinstance(event, Close) and event.code == 1011
    assert wait_until(lambda: "cannot make a handler" in app_server.error_log.read_text())


class Exiting(WebSocketHandler):
    inline = True

    def on_message(self, data: str | bytes) -> None:
        import sys
        sys.exit(3)  # or a library's: argparse on bad input


@pytest.mark.expect_log("websocket-handler-error")
def test_sys_exit_in_an_inline_handler_closes_1011_and_the_server_goes_on(
        app_server: RunningServer) -> None:
    """An inline handler's `sys.exit()` left the loop: the server stopped (exit code 0,
    nothing logged), every other connection with it. It is the handler's failure: 1011."""
    on_loop(app_server, lambda: app_server.server.app.websocket("/exiting")(Exiting))
    with connect(app_server, "/exiting") as ws:
        ws.send("bye")
        event = ws.recv()
        assert isinstance(event, Close) and event.code == 1011
    assert wait_until(lambda: "websocket-handler-error" in app_server.error_log.read_text())
    with connect(app_server, "/inline") as ws:  # the server still serves
        ws.send("still here")
        ws.close()
    assert wait_until(lambda: ("message", "still here") in EVENTS)


USER: contextvars.ContextVar[str] = contextvars.ContextVar("ws_user", default="nobody")


class WhoAmI(WebSocketHandler):
    """Says whose session it is: the user its upgrade request's middleware found, then
    what this session set (a message "be X"), all in the session's own context."""

    def on_open(self) -> None:
        self.ws.send(f"open {USER.get()}")

    def on_message(self, data: str | bytes) -> None:
        if isinstance(data, str) and data.startswith("be "):
            USER.set(data[3:])
        self.ws.send(f"{data} -> {USER.get()}")


class InlineWhoAmI(WhoAmI):
    inline = True


@pytest.mark.parametrize("path", ["/who", "/who-inline"])
def test_a_session_runs_in_its_upgrade_requests_context_and_keeps_its_own(
        tmp_path: Path, path: str) -> None:
    """The session's callbacks ran in whatever context their thread had: a ContextVar the
    upgrade request's middleware set (the user it authenticated) was not seen by the
    handler, and one an inline handler set leaked into the loop's context, so into every
    later request and session. Now each session runs in a copy of its upgrade request's
    context."""
    running = start_server(tmp_path, websocket={"ping_interval_s": 0.0},
                           server={"pool_threads": 1})
    app = App()

    @app.middleware
    def who(request: Request, call_next):  # type: ignore[no-untyped-def]
        name = request.headers.get("x-user")
        if name:
            USER.set(name)
        return call_next(request)

    app.websocket("/who")(WhoAmI)
    app.websocket("/who-inline")(InlineWhoAmI)

    @app.get("/user", inline=True)
    def user(request: Request) -> str:
        return USER.get()

    try:
        app.on_error = running.server.app_error
        on_loop(running, setattr, running.server.http, "app", app)
        with connect(running, path, headers={"X-User": "alice"}) as alice:
            assert _text(alice) == "open alice"
            alice.send("be mallory")
            assert _text(alice) == "be mallory -> mallory"
            with connect(running, path) as anonymous:
                assert _text(anonymous) == "open nobody"
                anonymous.send("hi")
                assert _text(anonymous) == "hi -> nobody"
            alice.send("still")
            assert _text(alice) == "still -> mallory"
        status, _, body = fetch(running, "GET", "/user")
        assert (status, body) == (200, b"nobody")
    finally:
        running.stop()


def _text(ws: WsClient) -> str:
    event = ws.recv()
    assert isinstance(event, Message) and isinstance(event.data, str), event
    return event.data
