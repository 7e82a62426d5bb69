"""Certificates that rotate without a restart: a reload under load, SIGHUP in a real
process, a broken pair that keeps the old one, `tls.watch`."""

from __future__ import annotations

import http.client
import shutil
import signal
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import reactor.ops.server as server_module
from reactor.cli import build_parser
from reactor.ops.config import load_config
from reactor.ops.server import ReloadError, Server
from tests import logguard
from tests.conftest import RunningServer, on_loop, request_bytes, wait_for_log, wait_until
from tests.conn.tlskit import Certs, peer_serial, tls_client, tls_port, tls_server
from tests.ops.serverproc import ServeProcess, base_config, write_config
from tests.ops.serverproc import wait_until as wait_for


def pair_of(running: RunningServer) -> tuple[Path, Path]:
    tls = running.server.config.tls
    assert tls.cert is not None and tls.key is not None
    return tls.cert, tls.key


def rotate(certs: Certs, running_pair: tuple[Path, Path], *names: str) -> None:
    """Issue a new certificate for `names` and move it over the running pair's files."""
    cert, key = certs.issue("next", *names)
    shutil.move(key, running_pair[1])
    shutil.move(cert, running_pair[0])


def serial_of_new_connection(port: int, context: ssl.SSLContext) -> str:
    connection = http.client.HTTPSConnection("localhost", port, context=context, timeout=10)
    try:
        connection.request("GET", "/echo/x")
        response = connection.getresponse()
        assert (response.status, response.read()) == (200, b"x")
        assert isinstance(connection.sock, ssl.SSLSocket)
        return peer_serial(connection.sock)
    finally:
        connection.close()


class Load:
    """A client thread doing requests on new connections in a loop (wrk-style): every
    serial it saw, every failure."""

    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        self.port = port
        self.context = context
        self.serials: list[str] = []
        self.failures: list[BaseException] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self.serials.append(serial_of_new_connection(self.port, self.context))
            except Exception as exc:
                self.failures.append(exc)

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(10)


@pytest.fixture
def running(tmp_path: Path, certs: Certs) -> Iterator[RunningServer]:
    server = tls_server(tmp_path, certs)
    yield server
    server.stop()


def test_a_reload_under_load_swaps_the_certificate_without_a_failed_request(
        running: RunningServer, certs: Certs) -> None:
    context = certs.client_context()
    config = running.server.config
    pair = pair_of(running)
    old_serial = serial_of_new_connection(tls_port(running), context)
    with tls_client(running, context) as kept:
        kept.send(request_bytes("GET", "/echo/before"))
        assert kept.read_response().body == b"before"
        load = Load(tls_port(running), context)
        try:
            assert wait_until(lambda: len(load.serials) >= 20, timeout=20)
            rotate(certs, pair, "localhost", "127.0.0.1")
            on_loop(running, running.server.apply_config, config)
            seen = len(load.serials)
            assert wait_until(lambda: len(load.serials) >= seen + 20, timeout=20)
        finally:
            load.finish()
        assert load.failures == []
        new_serial = load.serials[-1]
        assert new_serial != old_serial and set(load.serials) == {old_serial, new_serial}
        kept.send(request_bytes("GET", "/echo/after"))  # the connection made before
        assert kept.read_response().body == b"after"
        assert isinstance(kept.sock, ssl.SSLSocket) and peer_serial(kept.sock) == old_serial


def test_a_broken_pair_on_reload_keeps_the_running_certificate(
        running: RunningServer, certs: Certs, tmp_path: Path) -> None:
    context = certs.client_context()
    config = running.server.config
    old_serial = serial_of_new_connection(tls_port(running), context)
    _, other_key = certs.issue("other", "localhost")
    key = pair_of(running)[1]
    shutil.copy(other_key, key)  # the key no longer matches the certificate
    with pytest.raises(ReloadError, match=f"{key} does not match"):
        on_loop(running, running.server.apply_config, config)
    assert serial_of_new_connection(tls_port(running), context) == old_serial


@pytest.mark.expect_log("tls-reload-failed")
def test_tls_watch_reloads_changed_files_and_logs_a_broken_pair(
        tmp_path: Path, certs: Certs, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_module, "WATCH_INTERVAL_S", 0.1)
    running = tls_server(tmp_path, certs, tls={"watch": True})
    try:
        context = certs.client_context()
        pair = pair_of(running)
        old_serial = serial_of_new_connection(tls_port(running), context)
        _, other_key = certs.issue("other", "localhost")
        shutil.copy(other_key, pair[1])
        failed = wait_for_log(running.error_log,
                              lambda line: line["event"] == "tls-reload-failed")[0]
        assert str(pair[1]) in failed["reason"]
        assert serial_of_new_connection(tls_port(running), context) == old_serial
        rotate(certs, pair, "localhost")
        wait_for_log(running.error_log, lambda line: line["event"] == "tls-reloaded")
        assert serial_of_new_connection(tls_port(running), context) != old_serial
    finally:
        running.stop()


# ---- SIGHUP in a real `reactor serve` -----------------------------------------------------


@pytest.mark.expect_log("reload-failed")
def test_sighup_rotates_the_certificate_and_a_broken_one_is_refused(
        tmp_path: Path, certs: Certs) -> None:
    cert, key = certs.issue("server", "localhost")
    sections = base_config(tmp_path, tls={"listen": ["localhost:0"], "cert": str(cert),
                                          "key": str(key)})
    config = write_config(tmp_path / "reactor.toml", sections)
    process = ServeProcess(["--config", str(config)], cwd=tmp_path)
    try:
        https_line = wait_for(lambda: [line for line in process.events("listening")
                                         if line["url"].startswith("https://")])
        port = int(https_line[0]["port"])
        context = certs.client_context()
        old_serial = serial_of_new_connection(port, context)

        rotate(certs, (cert, key), "localhost")
        process.send_signal(signal.SIGHUP)
        process.wait_event("reloaded")
        assert process.wait_event("tls-reloaded")["certificates"] == 1
        new_serial = serial_of_new_connection(port, context)
        assert new_serial != old_serial

        cert.write_text("not a certificate\n")
        process.send_signal(signal.SIGHUP)
        failed = process.wait_event("reload-failed")
        assert str(cert) in failed["reason"]
        assert serial_of_new_connection(port, context) == new_serial
        assert not [line for line in process.lines if "Traceback" in str(line)]
    finally:
        process.stop()


# ---- certbot's layout: live/NAME/*.pem are symlinks swapped into archive/ at renewal ------


def certbot_renew(certs: Certs, live: Path, generation: int, *names: str) -> None:
    """Issue generation N into archive/ and point live/'s links at it, as certbot renews."""
    cert, key = certs.issue(f"gen{generation}", *names)
    archive = live.parent / "archive"
    archive.mkdir(exist_ok=True)
    for source, name in ((cert, "fullchain"), (key, "privkey")):
        target = archive / f"{name}{generation}.pem"
        shutil.copy(source, target)
        temp = live / f".{name}.tmp"
        temp.symlink_to(Path("..", "archive", target.name))
        temp.replace(live / f"{name}.pem")


def serial_for(port: int, context: ssl.SSLContext, server_name: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=server_name) as sock:
        return peer_serial(sock)


def test_tls_watch_follows_a_certbot_renewal_of_an_sni_certificate(
        tmp_path: Path, certs: Certs, monkeypatch: pytest.MonkeyPatch) -> None:
    """The [[tls.certificates]] paths are kept as written: a link in live/ swapped to a
    new archive/ file is a change (they were resolved at load, so the old target was
    watched and reloaded for ever; only a restart saw the renewal)."""
    monkeypatch.setattr(server_module, "WATCH_INTERVAL_S", 0.05)
    default_cert, default_key = certs.issue("default", "localhost")
    live = tmp_path / "live"
    live.mkdir()
    certbot_renew(certs, live, 1, "api.example")
    source = write_config(tmp_path / "reactor.toml", base_config(
        tmp_path, log={"error": str(tmp_path / "error.log")},
        tls={"listen": ["127.0.0.1:0"], "cert": str(default_cert), "key": str(default_key),
             "watch": True}))
    with source.open("a") as file:
        file.write(f'\n[[tls.certificates]]\nnames = ["api.example"]\n'
                   f'cert = "{live}/fullchain.pem"\nkey = "{live}/privkey.pem"\n')
    config = load_config(build_parser().parse_args(["serve", "--config", str(source)]), {})
    server = Server(config)
    thread = threading.Thread(target=server.run, kwargs={"install_signals": False},
                              daemon=True)
    thread.start()
    running = RunningServer(server, thread, tmp_path / "access.log", tmp_path / "error.log")
    logguard.track(running, "files-disabled")
    try:
        context = certs.client_context()
        first = serial_for(tls_port(running), context, "api.example")
        certbot_renew(certs, live, 2, "api.example")
        wait_for_log(running.error_log, lambda line: line["event"] == "tls-reloaded",
                     timeout=3)
        assert serial_for(tls_port(running), context, "api.example") != first
    finally:
        running.stop()
