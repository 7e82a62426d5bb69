"""Reload applies every section: each case reloads a change and checks the behaviour over a
real socket (a server in a thread; `Server.apply_config` is what SIGHUP runs after re-reading
the configuration). Restart-only settings are checked for the warning line instead.

A new section (or setting) must declare its reload class, and a new section must get a case
here: `test_every_section_has_a_reload_case` fails until it does.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pytest

from reactor.conn.listener import ListenerOptions
from reactor.ops.settings import SECTION_CLASSES, SETTINGS, Config, Reload, Spec
from tests.conftest import (
    RawClient,
    RunningServer,
    on_loop,
    read_log,
    request_bytes,
    start_server,
    wait_for_log,
    wait_until,
)


def status(running: RunningServer, method: str, target: str, body: bytes = b"",
           headers: dict[str, str] | None = None, port: int | None = None) -> tuple[int, dict]:
    """(status, lower-cased headers) of one request on a fresh raw connection."""
    with RawClient(running.host, port or running.port) as client:
        client.send(request_bytes(method, target, headers, body))
        response = client.read_response(head=method == "HEAD")
    return response.status, {name.lower(): value for name, value in response.fields}


def reload(running: RunningServer, **sections: dict[str, Any]) -> None:
    """Apply the running config with `sections` overridden, on the loop thread."""
    config = running.server.config
    for name, values in sections.items():
        config = dataclasses.replace(
            config, **{name: dataclasses.replace(getattr(config, name), **values)})
    on_loop(running, running.server.apply_config, config)


@dataclass
class Site:
    """Two document roots and two files directories under tmp_path."""

    root: Path
    other_root: Path
    files: Path
    other_files: Path


@pytest.fixture
def site(tmp_path: Path) -> Site:
    paths = [tmp_path / name for name in ("root", "other-root", "files", "other-files")]
    for path in paths:
        path.mkdir()
    root, other_root, files, other_files = paths
    (root / "sub").mkdir()
    (root / "sub" / "a.txt").write_bytes(b"a")
    (root / "page.txt").write_bytes(b"text " * 400)
    (other_root / "only-here.txt").write_bytes(b"new root")
    (other_files / "there.txt").write_bytes(b"other files")
    return Site(root, other_root, files, other_files)


@pytest.fixture
def server_for(tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    started: list[RunningServer] = []

    def start(**sections: dict[str, Any]) -> RunningServer:
        running = start_server(tmp_path, **sections)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


# ---- [static] --------------------------------------------------------------------------------


def test_static_listing_off(server_for: Callable[..., RunningServer], site: Site) -> None:
    running = server_for(static={"root": site.root, "listing": True})
    assert status(running, "GET", "/sub/")[0] == 200
    reload(running, static={"listing": False})
    assert status(running, "GET", "/sub/")[0] in (403, 404)


def test_static_uploads_off(server_for: Callable[..., RunningServer], site: Site) -> None:
    running = server_for(static={"root": site.root, "uploads": True})
    assert status(running, "PUT", "/up.txt", b"x")[0] == 201
    reload(running, static={"uploads": False})
    assert status(running, "PUT", "/up2.txt", b"x")[0] == 405
    assert not (site.root / "up2.txt").exists()


def test_static_new_root(server_for: Callable[..., RunningServer], site: Site) -> None:
    running = server_for(static={"root": site.root})
    assert status(running, "GET", "/only-here.txt")[0] == 404
    reload(running, static={"root": site.other_root})
    assert status(running, "GET", "/only-here.txt")[0] == 200
    assert status(running, "GET", "/sub/a.txt")[0] == 404


def test_static_cache_control(server_for: Callable[..., RunningServer], site: Site) -> None:
    running = server_for(static={"root": site.root, "cache_control": "no-store"})
    assert status(running, "GET", "/sub/a.txt")[1]["cache-control"] == "no-store"
    reload(running, static={"cache_control": "public, max-age=60"})
    assert status(running, "GET", "/sub/a.txt")[1]["cache-control"] == "public, max-age=60"


# ---- [compression], [files] ------------------------------------------------------------------


def test_compression_off(server_for: Callable[..., RunningServer], site: Site) -> None:
    running = server_for(static={"root": site.root})
    gzip = {"Accept-Encoding": "gzip"}
    assert status(running, "GET", "/page.txt", headers=gzip)[1].get("content-encoding") == "gzip"
    reload(running, compression={"enabled": False})
    assert "content-encoding" not in status(running, "GET", "/page.txt", headers=gzip)[1]


def test_files_new_directory(server_for: Callable[..., RunningServer], site: Site) -> None:
    running = server_for(files={"directory": site.files})
    assert status(running, "GET", "/files/there.txt")[0] == 404
    reload(running, files={"directory": site.other_files, "uploads": False})
    assert status(running, "GET", "/files/there.txt")[0] == 200
    assert status(running, "POST", "/files/new.txt", b"x")[0] == 405


# ---- [limits], [timeouts] --------------------------------------------------------------------


def test_limits_smaller(server_for: Callable[..., RunningServer], site: Site) -> None:
    running = server_for(files={"directory": site.files})
    big_header = {"X-Pad": "p" * 2000}
    assert status(running, "POST", "/files/a", b"x" * 100)[0] == 201
    assert status(running, "GET", "/echo/x", headers=big_header)[0] == 200
    reload(running, limits={"max_body_bytes": 10, "max_header_bytes": 1000})
    assert status(running, "POST", "/files/b", b"x" * 100)[0] == 413
    assert status(running, "GET", "/echo/x", headers=big_header)[0] == 431


def test_timeouts_header(server_for: Callable[..., RunningServer]) -> None:
    running = server_for(timeouts={"header_s": 600.0})
    reload(running, timeouts={"header_s": 0.2})
    with RawClient.to(running) as client:
        client.send(b"GET /echo/x HTTP/1.1\r\n")  # and never the rest of the head
        assert client.read_response().status == 408


# ---- [log] -----------------------------------------------------------------------------------


def test_log_new_access_file(server_for: Callable[..., RunningServer], tmp_path: Path) -> None:
    running = server_for()
    assert status(running, "GET", "/echo/before")[0] == 200
    moved = tmp_path / "logs-2" / "access.log"
    moved.parent.mkdir()
    reload(running, log={"access": str(moved)})
    assert status(running, "GET", "/echo/after")[0] == 200
    lines = wait_for_log(moved, lambda line: line.get("event") == "request")
    assert [line["path"] for line in lines] == ["/echo/after"]
    assert "/echo/after" not in {line.get("path") for line in read_log(running.access_log)}


# ---- [proxy], [health], [metrics] ----------------------------------------------------------


def test_proxy_trusted(server_for: Callable[..., RunningServer]) -> None:
    running = server_for()  # loopback is trusted by default
    forwarded = {"X-Forwarded-For": "203.0.113.7"}
    assert status(running, "GET", "/echo/before", headers=forwarded)[0] == 200
    reload(running, proxy={"trusted": ("10.0.0.0/8",)})
    assert status(running, "GET", "/echo/after", headers=forwarded)[0] == 200
    lines = wait_for_log(running.access_log, lambda line: line.get("event") == "request",
                         count=2)
    assert [(line["path"], line["client_addr"]) for line in lines] == [
        ("/echo/before", "203.0.113.7"), ("/echo/after", "127.0.0.1")]


def test_proxy_protocol_on_a_kept_listener(server_for: Callable[..., RunningServer]) -> None:
    running = server_for()
    assert status(running, "GET", "/echo/plain")[0] == 200
    reload(running, proxy={"protocol": True})
    with RawClient(running.host, running.port) as client:
        client.send(b"PROXY TCP4 198.51.100.1 127.0.0.1 5555 80\r\n"
                    + request_bytes("GET", "/echo/proxied"))
        assert client.read_response().status == 200
    lines = wait_for_log(running.access_log, lambda line: line.get("path") == "/echo/proxied")
    assert lines[0]["client_addr"] == "198.51.100.1"


def test_health_paths(server_for: Callable[..., RunningServer]) -> None:
    running = server_for()
    assert status(running, "GET", "/readyz")[0] == 200
    reload(running, health={"readyz": "/ready-now", "livez": ""})
    assert status(running, "GET", "/ready-now")[0] == 200
    assert status(running, "GET", "/readyz")[0] == 404
    assert status(running, "GET", "/livez")[0] == 404


@pytest.mark.expect_log("reload-needs-restart")
def test_metrics_listen_needs_restart(server_for: Callable[..., RunningServer]) -> None:
    running = server_for()
    reload(running, metrics={"listen": "127.0.0.1:0"})
    warning = wait_for_log(running.error_log,
                           lambda line: line.get("event") == "reload-needs-restart")[0]
    assert warning["settings"] == ["metrics.listen"]


# ---- [tls] -----------------------------------------------------------------------------------


def test_tls_hsts_and_redirect(tmp_path: Path) -> None:
    """[tls] applies live: HSTS on HTTPS answers, the plain listener's 308 to https://.
    (Certificate rotation on reload: tests/ops/test_tls_reload.py.)"""
    from tests.conn.tlskit import Certs, https, tls_server
    certs = Certs(tmp_path / "certs")
    running = tls_server(tmp_path, certs)
    try:
        context = certs.client_context()
        assert "Strict-Transport-Security" not in https(running, context, "GET", "/echo/a")[1]
        assert status(running, "GET", "/echo/a")[0] == 200
        reload(running, tls={"hsts_max_age": 600, "redirect_http": True})
        assert https(running, context, "GET", "/echo/b")[1][
            "Strict-Transport-Security"] == "max-age=600"
        code, headers = status(running, "GET", "/echo/c")
        assert code == 308 and headers["location"].startswith("https://")
    finally:
        running.stop()


# ---- [websocket] -----------------------------------------------------------------------------


def test_websocket_max_message_bytes(server_for: Callable[..., RunningServer]) -> None:
    """New sessions get the reloaded limits (open ones keep theirs)."""
    from reactor.proto.websocket import Close, Message
    from tests.wsclient import WsClient
    running = server_for()
    with WsClient(running.host, running.port, "/ws/echo") as ws:
        ws.send(b"x" * 200)
        event = ws.recv()
        assert isinstance(event, Message) and event.data == b"x" * 200
    reload(running, websocket={"max_message_bytes": 100})
    with WsClient(running.host, running.port, "/ws/echo") as ws:
        ws.send(b"x" * 200)
        event = ws.recv()
        assert isinstance(event, Close) and event.code == 1009


# ---- [server] --------------------------------------------------------------------------------


def test_server_listen_and_listeners(server_for: Callable[..., RunningServer]) -> None:
    running = server_for()
    first = running.port
    reload(running, server={"listeners": (ListenerOptions("127.0.0.2:0"),)})
    ports = dict(running.server.addresses)
    assert set(ports) == {"127.0.0.1", "127.0.0.2"}
    assert status(running, "GET", "/echo/x", port=first)[0] == 200
    with RawClient("127.0.0.2", ports["127.0.0.2"]) as client:
        client.send(request_bytes("GET", "/echo/extra"))
        assert client.read_response().body == b"extra"
    reload(running, server={"listeners": ()})
    assert [host for host, _port in running.server.addresses] == ["127.0.0.1"]
    with pytest.raises(OSError), socket.create_connection(("127.0.0.2", ports["127.0.0.2"]), 2):
        pass


@pytest.mark.expect_log("connection-limit-reached")
def test_server_max_connections(server_for: Callable[..., RunningServer]) -> None:
    running = server_for()
    reload(running, server={"max_connections": 1})
    with RawClient.to(running) as held:  # the one allowed connection, mid-request (an
        held.send(b"GET /echo/held HTTP/1.1\r\nHost: t\r\n")  # idle one would be reused)
        assert wait_until(lambda: [
            transport for transport in list(running.server.http.connections)
            if not transport.protocol.reusable])
        with RawClient.to(running) as shed:
            shed.send(request_bytes("GET", "/echo/shed"))
            assert shed.read_response().status == 503
        held.send(b"\r\n")
        assert held.read_response().status == 200


def test_server_tokens(server_for: Callable[..., RunningServer]) -> None:
    running = server_for()
    assert status(running, "GET", "/echo/x")[1]["server"].startswith("reactor/")
    reload(running, server={"tokens": False})
    assert status(running, "GET", "/echo/x")[1]["server"] == "reactor"
    assert status(running, "GET", "/nowhere")[1]["server"] == "reactor"  # the general path
    reload(running, server={"tokens": True})
    assert status(running, "GET", "/echo/x")[1]["server"].startswith("reactor/")


def test_server_busy_poll(server_for: Callable[..., RunningServer]) -> None:
    # What the window does is tests/loop's; here: the setting reaches the loop, both ways.
    running = server_for(server={"busy_poll_us": 250})
    assert running.server.loop.busy_poll_s == pytest.approx(250e-6)
    reload(running, server={"busy_poll_us": 0})
    assert running.server.loop.busy_poll_s == 0.0
    assert status(running, "GET", "/echo/x")[0] == 200
    reload(running, server={"busy_poll_us": 100})
    assert running.server.loop.busy_poll_s == pytest.approx(100e-6)
    assert status(running, "GET", "/echo/x")[0] == 200


# ---- restart-only settings: a warning naming them ----------------------------------------------


@pytest.mark.expect_log("reload-needs-restart")
def test_restart_only_settings_warn(server_for: Callable[..., RunningServer],
                                    tmp_path: Path) -> None:
    running = server_for()
    reload(running, server={"pool_threads": 7, "workers": 2},
           daemon={"umask": 0o077, "pidfile": tmp_path / "r.pid"})
    warning = wait_for_log(running.error_log,
                           lambda line: line.get("event") == "reload-needs-restart")[0]
    assert warning["level"] == "warning"
    assert warning["settings"] == ["server.pool_threads", "server.workers", "daemon.pidfile",
                                   "daemon.umask"]
    assert status(running, "GET", "/echo/x")[0] == 200


@pytest.mark.expect_log("reload-needs-restart")
def test_app_code_is_imported_once_per_start(server_for: Callable[..., RunningServer],
                                             tmp_path: Path) -> None:
    """[app] names code imported before workers fork: a reload keeps serving the code it
    has, and says the new one waits for a restart."""
    running = server_for()
    reload(running, app={"native": "elsewhere:app", "path": (tmp_path,)})
    warning = wait_for_log(running.error_log,
                           lambda line: line.get("event") == "reload-needs-restart")[0]
    assert warning["settings"] == ["app.native", "app.path"]
    assert status(running, "GET", "/echo/still-built-in")[0] == 200


@pytest.mark.expect_log("reload-needs-restart")
def test_restart_only_change_survives_a_later_reload(
        server_for: Callable[..., RunningServer], tmp_path: Path) -> None:
    """A restart-only [app] change stays pending through a later reload that rebuilds the
    app for another reason: the running code keeps answering, and the warning comes again."""
    code = "def app(environ, start_response):\n" \
           "    start_response('200 OK', [('Content-Type', 'text/plain')])\n" \
           "    return [b'%s']\n"
    (tmp_path / "keep_run_a.py").write_text(code % "a")
    (tmp_path / "keep_run_b.py").write_text(code % "b")
    running = server_for(app={"wsgi": "keep_run_a:app", "path": (tmp_path,)})

    def answer() -> bytes:
        with RawClient.to(running) as client:
            client.send(request_bytes("GET", "/"))
            return client.read_response().body

    assert answer() == b"a"
    # the file as SIGHUP re-reads it: first appb, then appb and a compression level
    started = running.server.config
    first = dataclasses.replace(started, app=dataclasses.replace(started.app,
                                                                 wsgi="keep_run_b:app"))
    second = dataclasses.replace(first, compression=dataclasses.replace(started.compression,
                                                                        level=5))
    on_loop(running, running.server.apply_config, first)
    on_loop(running, running.server.apply_config, second)
    warnings = wait_for_log(running.error_log,
                            lambda line: line.get("event") == "reload-needs-restart", count=2)
    assert [w["settings"] for w in warnings] == [["app.wsgi"], ["app.wsgi"]]
    reloads = [line for line in read_log(running.error_log) if line.get("event") == "reloaded"]
    assert [r["changed"] for r in reloads] == [[], ["compression.level"]]
    assert answer() == b"a"
    assert running.server.config.app.wsgi == "keep_run_a:app"
    assert running.server.config.compression.level == 5


def test_a_live_change_does_not_warn(server_for: Callable[..., RunningServer]) -> None:
    running = server_for()
    reload(running, limits={"max_body_bytes": 10})
    wait_for_log(running.error_log, lambda line: line.get("event") == "reloaded")
    assert not [line for line in read_log(running.error_log)
                if line.get("event") == "reload-needs-restart"]


# ---- every section and setting is covered -----------------------------------------------------

SECTION_CASES = {
    "server": [test_server_listen_and_listeners, test_server_max_connections,
               test_server_busy_poll, test_server_tokens, test_restart_only_settings_warn],
    "limits": [test_limits_smaller],
    "timeouts": [test_timeouts_header],
    "files": [test_files_new_directory],
    "static": [test_static_listing_off, test_static_uploads_off, test_static_new_root,
               test_static_cache_control],
    "compression": [test_compression_off],
    "app": [test_app_code_is_imported_once_per_start,
            test_restart_only_change_survives_a_later_reload],
    "tls": [test_tls_hsts_and_redirect],
    "websocket": [test_websocket_max_message_bytes],
    "proxy": [test_proxy_trusted, test_proxy_protocol_on_a_kept_listener],
    "health": [test_health_paths],
    "metrics": [test_metrics_listen_needs_restart],
    "log": [test_log_new_access_file],
    "daemon": [test_restart_only_settings_warn],
}


def test_every_section_has_a_reload_case() -> None:
    assert set(SECTION_CASES) == {f.name for f in fields(Config)}, (
        "a section was added to Config: declare each setting's reload class and add a case"
        " above that reloads a change of it and checks the behaviour")


def test_every_setting_declares_a_reload_class() -> None:
    for section, cls in SECTION_CLASSES.items():
        for field in fields(cls):
            spec = field.metadata.get("setting")
            assert isinstance(spec, Spec), f"{section}.{field.name} is not declared by setting()"
            assert isinstance(spec.reload, Reload), f"{section}.{field.name}: no reload class"
    assert {s.reload for s in SETTINGS} == set(Reload)
