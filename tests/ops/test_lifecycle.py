"""The process lifecycle of a real `reactor serve`: graceful stop, reload, log reopening,
start-up errors. Real subprocesses, real signals, real sockets on 127.0.0.1, real files."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from reactor.ops.listeners import ListenError
from reactor.ops.server import Server
from reactor.ops.settings import Config, LogConfig, ServerConfig
from tests.conftest import free_port
from tests.ops.serverproc import (
    Client,
    ServeProcess,
    base_config,
    get,
    post,
    reactor_argv,
    read_json_lines,
    request_bytes,
    server_env,
    wait_until,
    write_config,
)

IN_FLIGHT = 50
UPLOAD_BYTES = 4000



def serve(started: list[ServeProcess], tmp_path: Path, sections: dict, *args: str,
          env: dict[str, str] | None = None) -> ServeProcess:
    config = write_config(tmp_path / "reactor.toml", sections)
    process = ServeProcess(["--config", str(config), *args], cwd=tmp_path, env=env)
    started.append(process)
    return process


def access_lines(tmp_path: Path, name: str = "access.log") -> list[dict]:
    return [line for line in read_json_lines(tmp_path / name) if line["event"] == "request"]


# --- graceful stop -------------------------------------------------------------------------------


def _start_upload(port: int, index: int) -> Client:
    """A POST whose head has been parsed (the 100 Continue says so) and half its body sent."""
    client = Client(port)
    head = request_bytes("POST", f"/files/up-{index}", headers={
        "Content-Length": str(UPLOAD_BYTES), "Expect": "100-continue"})
    client.send(head)
    assert client.read_until(b"\r\n\r\n").startswith(b"HTTP/1.1 100 ")
    client.send(_body(index)[:UPLOAD_BYTES // 2])
    return client


def _body(index: int) -> bytes:
    return (b"%04d" % index) * (UPLOAD_BYTES // 4)


def test_sigterm_finishes_50_in_flight_uploads(started: list[ServeProcess], tmp_path: Path,
                                               files_dir: Path) -> None:
    server = serve(started, tmp_path, base_config(tmp_path, files={"directory": str(files_dir)}))
    port = server.port
    idle = [Client(port) for _ in range(3)]
    for client in idle:
        assert client.request("GET", "/echo/idle").status == 200
    uploads = [_start_upload(port, i) for i in range(IN_FLIGHT)]

    server.send_signal(signal.SIGTERM)
    stopping = server.wait_event("stopping")
    assert stopping["connections"] == IN_FLIGHT + len(idle)
    with pytest.raises(ConnectionRefusedError):  # no longer accepting
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    for client in idle:  # idle keep-alive connections: closed in order, not reset
        assert client.at_eof()
    for i, client in enumerate(uploads):
        client.send(_body(i)[UPLOAD_BYTES // 2:])
    for client in uploads:
        response = client.read_response()
        assert response.status == 201, response
        assert response.headers.get("connection") == "close"
        assert client.at_eof()
        client.close()

    assert server.wait() == 0
    for i in range(IN_FLIGHT):
        assert (files_dir / f"up-{i}").read_bytes() == _body(i)
    posts = [line for line in access_lines(tmp_path) if line["method"] == "POST"]
    assert len(posts) == IN_FLIGHT
    assert {line["status"] for line in posts} == {201}


def test_requests_served_counts_uploads(started: list[ServeProcess], tmp_path: Path,
                                        files_dir: Path) -> None:
    server = serve(started, tmp_path, base_config(tmp_path, files={"directory": str(files_dir)}))
    assert post(server.port, "/files/counted", b"x" * 10).status == 201
    assert get(server.port, "/echo/counted").status == 200
    server.send_signal(signal.SIGTERM)
    assert server.wait() == 0
    assert server.events("stopped")[0]["requests"] == 2


def test_a_request_pipelined_behind_the_last_response_gets_a_clean_close(
        started: list[ServeProcess], tmp_path: Path, files_dir: Path) -> None:
    """RFC 9112 9.6: after a response with `Connection: close` the server processes no further
    request on that connection -- and it closes in order (FIN), never with a reset."""
    server = serve(started, tmp_path, base_config(tmp_path, files={"directory": str(files_dir)}))
    client = _start_upload(server.port, 0)
    server.send_signal(signal.SIGTERM)
    server.wait_event("stopping")
    client.send(_body(0)[UPLOAD_BYTES // 2:] + request_bytes("GET", "/echo/pipelined"))
    response = client.read_response()
    assert (response.status, response.headers["connection"]) == (201, "close")
    assert client.at_eof()
    client.close()  # else the server's lingering close waits for our FIN until it times out
    assert server.wait() == 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGQUIT],
                         ids=["INT", "TERM", "QUIT"])  # QUIT: graceful, as nginx's
def test_stop_signal_with_nothing_in_flight_exits_0(started: list[ServeProcess], tmp_path: Path,
                                                     sig: int) -> None:
    server = serve(started, tmp_path, base_config(tmp_path))
    assert get(server.port, "/echo/x").status == 200
    server.send_signal(sig)
    assert server.wait() == 0
    assert [line["event"] for line in server.lines][-2:] == ["stopping", "stopped"]
    assert len(access_lines(tmp_path)) == 1


# --- SIGHUP reload -------------------------------------------------------------------------------


def _reload(server: ServeProcess, count: int = 1) -> dict:
    server.send_signal(signal.SIGHUP)
    return wait_until(lambda: (server.events("reloaded") + server.events("reload-failed"))[
        count - 1:], what="a reload outcome")[0]


def test_sighup_applies_new_limits_and_open_connections_keep_working(
        started: list[ServeProcess], tmp_path: Path, files_dir: Path) -> None:
    sections = base_config(tmp_path, files={"directory": str(files_dir)},
                           limits={"max_body_bytes": 1000})
    server = serve(started, tmp_path, sections)
    port = server.port
    before = Client(port)
    assert before.request("POST", "/files/a", b"x" * 100).status == 201

    sections["limits"]["max_body_bytes"] = 10
    write_config(tmp_path / "reactor.toml", sections)
    outcome = _reload(server)
    assert outcome["event"] == "reloaded"
    assert outcome["changed"] == ["limits.max_body_bytes"]

    assert post(port, "/files/b", b"x" * 100).status == 413
    assert post(port, "/files/c", b"x" * 10).status == 201
    response = before.request("GET", "/echo/still-here")  # opened before the reload
    assert (response.status, response.body) == (200, b"still-here")
    assert before.request("GET", "/files/a").body == b"x" * 100
    before.close()


def test_sighup_limits_apply_to_the_next_request_of_an_open_connection(
        started: list[ServeProcess], tmp_path: Path, files_dir: Path) -> None:
    sections = base_config(tmp_path, files={"directory": str(files_dir)},
                           limits={"max_body_bytes": 1000})
    server = serve(started, tmp_path, sections)
    before = Client(server.port)
    assert before.request("POST", "/files/a", b"x" * 100).status == 201
    sections["limits"]["max_body_bytes"] = 10
    write_config(tmp_path / "reactor.toml", sections)
    assert _reload(server)["event"] == "reloaded"
    assert before.request("POST", "/files/a", b"x" * 100).status == 413


def test_sighup_swaps_the_app_for_new_files_settings(started: list[ServeProcess],
                                                     tmp_path: Path, files_dir: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "there.txt").write_bytes(b"from the new directory")
    sections = base_config(tmp_path, files={"directory": str(files_dir)})
    server = serve(started, tmp_path, sections)
    port = server.port
    assert post(port, "/files/here.txt", b"uploaded").status == 201

    sections["files"] = {"directory": str(other), "uploads": False}
    write_config(tmp_path / "reactor.toml", sections)
    assert sorted(_reload(server)["changed"]) == ["files.directory", "files.uploads"]
    response = get(port, "/files/there.txt")
    assert (response.status, response.body) == (200, b"from the new directory")
    assert get(port, "/files/here.txt").status == 404
    assert post(port, "/files/new.txt", b"x").status == 405


@pytest.mark.expect_log("reload-needs-restart")
def test_sighup_applies_static_changes_and_warns_about_restart_only_ones(
        started: list[ServeProcess], tmp_path: Path) -> None:
    root, other = tmp_path / "www", tmp_path / "www2"
    (root / "dir").mkdir(parents=True)
    (root / "dir" / "a.txt").write_bytes(b"a")
    other.mkdir()
    (other / "b.txt").write_bytes(b"from the new root")
    sections = base_config(tmp_path, static={"root": str(root), "listing": True,
                                             "uploads": True, "cache_control": "no-store"})
    server = serve(started, tmp_path, sections)
    port = server.port
    assert get(port, "/dir/").status == 200
    assert get(port, "/dir/a.txt").headers["cache-control"] == "no-store"
    with Client(port) as client:
        assert client.request("PUT", "/put.txt", b"x").status == 201

    sections["static"] = {"root": str(root), "listing": False, "uploads": False,
                          "cache_control": "max-age=60"}
    sections["server"]["pool_threads"] = 3
    write_config(tmp_path / "reactor.toml", sections)
    outcome = _reload(server)
    assert outcome["event"] == "reloaded"
    assert get(port, "/dir/").status in (403, 404)
    assert get(port, "/dir/a.txt").headers["cache-control"] == "max-age=60"
    with Client(port) as client:
        assert client.request("PUT", "/put2.txt", b"x").status == 405
    warning = server.wait_event("reload-needs-restart")
    assert (warning["level"], warning["settings"]) == ("warning", ["server.pool_threads"])

    sections["static"] = {"root": str(other)}
    write_config(tmp_path / "reactor.toml", sections)
    assert _reload(server, 2)["event"] == "reloaded"
    assert get(port, "/b.txt").body == b"from the new root"
    assert get(port, "/dir/a.txt").status == 404
    server.send_signal(signal.SIGTERM)
    assert server.wait() == 0


@pytest.mark.expect_log({"event": "reload-failed", "level": "error"})
def test_sighup_with_a_broken_config_keeps_the_old_one(started: list[ServeProcess],
                                                       tmp_path: Path, files_dir: Path) -> None:
    sections = base_config(tmp_path, files={"directory": str(files_dir)},
                           limits={"max_body_bytes": 1000})
    server = serve(started, tmp_path, sections)
    port = server.port
    config = tmp_path / "reactor.toml"
    config.write_text(config.read_text().replace("max_body_bytes = 1000", "max_body_bytes = -5"))

    outcome = _reload(server)
    assert outcome["event"] == "reload-failed"
    assert outcome["level"] == "error"
    assert "limits.max_body_bytes" in outcome["reason"] and "\n" not in outcome["reason"]
    assert post(port, "/files/a", b"x" * 100).status == 201  # the old limit still holds
    assert server.proc.poll() is None

    config.write_text("[server\n")  # not even TOML
    assert "TOML syntax error" in _reload(server, 2)["reason"]
    assert get(port, "/echo/ok").status == 200
    server.send_signal(signal.SIGTERM)
    assert server.wait() == 0


def test_sighup_rebinds_changed_listeners(started: list[ServeProcess], tmp_path: Path) -> None:
    sections = base_config(tmp_path)
    server = serve(started, tmp_path, sections)
    old_port = server.port
    kept = Client(old_port)
    assert kept.request("GET", "/echo/a").status == 200

    with socket.socket() as probe:  # a free port for the new address
        probe.bind(("127.0.0.1", 0))
        new_port = probe.getsockname()[1]
    sections["server"]["listen"] = [f"127.0.0.1:{new_port}"]
    write_config(tmp_path / "reactor.toml", sections)
    outcome = _reload(server)
    assert outcome["listen_added"] == [f"127.0.0.1:{new_port}"]
    assert outcome["listen_removed"] == ["127.0.0.1:0"]

    assert get(new_port, "/echo/new").status == 200
    listening = server.events("listening")  # the start's, then the added listener's
    assert [(line["host"], line["port"]) for line in listening][1:] == [
        ("127.0.0.1", new_port)]

    sections["server"]["listen"] = [f"127.0.0.1:{new_port}", "127.0.0.1:0"]
    write_config(tmp_path / "reactor.toml", sections)
    assert _reload(server, 2)["listen_added"] == ["127.0.0.1:0"]
    bound = server.events("listening")[2]  # a ":0" address: the port the kernel picked
    assert bound["port"] != 0 and bound["url"] == f"http://127.0.0.1:{bound['port']}"
    assert get(bound["port"], "/echo/zero").status == 200
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", old_port), timeout=2).close()
    assert kept.request("GET", "/echo/kept").body == b"kept"  # accepted on the old listener
    kept.close()


@pytest.mark.expect_log({"event": "reload-failed", "level": "error"})
def test_sighup_keeps_the_old_listeners_when_a_new_address_cannot_be_bound(
        started: list[ServeProcess], tmp_path: Path) -> None:
    sections = base_config(tmp_path, limits={"max_body_bytes": 1000})
    server = serve(started, tmp_path, sections)
    port = server.port
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        sections["server"]["listen"] = [f"127.0.0.1:{busy}"]
        sections["limits"]["max_body_bytes"] = 10
        write_config(tmp_path / "reactor.toml", sections)
        outcome = _reload(server)
    assert outcome["event"] == "reload-failed"
    assert outcome["reason"] == f"cannot listen on 127.0.0.1:{busy}: Address already in use"
    assert get(port, "/echo/still").status == 200
    assert post(port, "/nowhere", b"x" * 100).status == 404  # not 413: nothing was applied


@pytest.mark.usefixtures("ipv6")
def test_sighup_keeps_a_listener_whose_ipv6_address_is_spelled_differently(
        started: list[ServeProcess], tmp_path: Path) -> None:
    # "[::1]" and "[0:0::1]" (or "[2001:DB8::1]" and "[2001:db8::1]") are one socket address:
    # the listener is kept, not bound a second time ("address already in use", reload failed).
    port = free_port("::1")
    sections = base_config(tmp_path, server={"listen": [f"[::1]:{port}"]})
    server = serve(started, tmp_path, sections)
    assert server.port == port
    sections["server"]["listen"] = [f"[0:0::1]:0{port}"]
    sections["limits"] = {"max_body_bytes": 10}
    write_config(tmp_path / "reactor.toml", sections)
    outcome = _reload(server)
    assert outcome["event"] == "reloaded", outcome
    assert (outcome["listen_added"], outcome["listen_removed"]) == ([], [])
    client = Client(port, "::1")
    assert client.request("POST", "/nowhere", b"x" * 100).status == 413  # the reload applied
    client.close()


def test_sighup_moves_the_logs_to_new_files(started: list[ServeProcess], tmp_path: Path) -> None:
    sections = base_config(tmp_path)
    server = serve(started, tmp_path, sections)
    port = server.port
    assert get(port, "/echo/one").status == 200
    sections["log"] = {"access": str(tmp_path / "new-access.log"),
                       "error": str(tmp_path / "new-error.log")}
    write_config(tmp_path / "reactor.toml", sections)
    server.send_signal(signal.SIGHUP)
    wait_until(lambda: [line for line in read_json_lines(tmp_path / "new-error.log")
                        if line["event"] == "reloaded"], what="reloaded in new-error.log")
    assert get(port, "/echo/two").status == 200
    server.send_signal(signal.SIGTERM)
    assert server.wait() == 0
    assert [line["path"] for line in access_lines(tmp_path)] == ["/echo/one"]
    assert [line["path"] for line in access_lines(tmp_path, "new-access.log")] == ["/echo/two"]
    assert read_json_lines(tmp_path / "new-error.log")[-1]["event"] == "stopped"


# --- SIGUSR1 -------------------------------------------------------------------------------------


def test_sigusr1_reopens_a_renamed_access_log(started: list[ServeProcess], tmp_path: Path) -> None:
    server = serve(started, tmp_path, base_config(tmp_path))
    port = server.port
    assert get(port, "/echo/before").status == 200
    access = tmp_path / "access.log"
    wait_until(lambda: access_lines(tmp_path), what="the first access line")
    access.rename(tmp_path / "access.log.1")

    server.send_signal(signal.SIGUSR1)
    server.wait_event("logs-reopened")
    assert get(port, "/echo/after").status == 200
    wait_until(lambda: access_lines(tmp_path), what="a line in the new access.log")
    assert [line["path"] for line in access_lines(tmp_path)] == ["/echo/after"]
    assert [line["path"] for line in access_lines(tmp_path, "access.log.1")] == ["/echo/before"]


# --- start-up errors -----------------------------------------------------------------------------


def test_address_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(reactor_argv("--no-config", "--port", str(port)), cwd=tmp_path,
                                env=server_env(), capture_output=True, text=True, timeout=10)
    assert result.returncode == 1
    assert result.stderr == f"reactor: cannot listen on 127.0.0.1:{port}: Address already in use\n"


def test_unopenable_log_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = subprocess.run(reactor_argv("--no-config", "--port", "0", "--log", "/proc/1/x.log"),
                            cwd=tmp_path, env=server_env(), capture_output=True, text=True,
                            timeout=10)
    assert result.returncode == 2  # a configuration error, as check-config says too
    assert result.stderr.startswith("reactor: cannot open log file /proc/1/x.log: ")
    assert result.stderr.count("\n") == 1


def test_a_log_in_a_missing_directory_is_not_created(tmp_path: Path) -> None:
    target = tmp_path / "nonexistent" / "dir" / "a.log"
    result = subprocess.run(reactor_argv("--no-config", "--port", "0", "--log", str(target)),
                            cwd=tmp_path, env=server_env(), capture_output=True, text=True,
                            timeout=10)
    assert result.returncode == 2
    assert result.stderr == (f"reactor: cannot open log file {target}: directory"
                             f" {target.parent} does not exist\n")
    assert not (tmp_path / "nonexistent").exists()


def test_pidfile_without_daemon_is_written_and_removed_at_exit(
        started: list[ServeProcess], tmp_path: Path) -> None:
    pidfile = tmp_path / "reactor.pid"
    server = serve(started, tmp_path, base_config(tmp_path), "--pidfile", str(pidfile))
    server.wait_event("listening")
    assert pidfile.read_text() == f"{server.proc.pid}\n"
    second = subprocess.run(reactor_argv("--no-config", "--port", "0", "--pidfile",
                                         str(pidfile)), cwd=tmp_path, env=server_env(),
                            capture_output=True, text=True, timeout=10)
    assert second.returncode == 1  # a live pid file: already running, a run-time refusal
    assert second.stderr == (f"reactor: already running: pid file {pidfile} holds pid"
                             f" {server.proc.pid}, a live process\n")
    server.send_signal(signal.SIGTERM)
    assert server.wait() == 0
    assert not pidfile.exists()


def test_hup_and_usr1_sent_as_soon_as_the_pid_file_exists_are_handled(
        started: list[ServeProcess], tmp_path: Path) -> None:
    """The pid file is written before the loop's handlers are in: a logrotate or a script
    signalling the pid it names right away must get a reload and a reopen, not the default
    action of HUP and USR1 (the process was killed)."""
    for attempt in range(2):
        pidfile = tmp_path / f"reactor-{attempt}.pid"
        server = serve(started, tmp_path, base_config(tmp_path), "--pidfile", str(pidfile))
        deadline = time.monotonic() + 10
        while not (pidfile.exists() and pidfile.read_text().strip()):  # as soon as it is
            assert time.monotonic() < deadline, "no pid file"
            time.sleep(0.0005)
        pid = int(pidfile.read_text())
        os.kill(pid, signal.SIGUSR1)
        os.kill(pid, signal.SIGHUP)
        server.wait_event("reloaded")
        server.wait_event("logs-reopened")
        assert get(server.port, "/echo/alive").body == b"alive"
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0


def test_pidfile_in_a_missing_directory_exits_2(tmp_path: Path) -> None:
    pidfile = tmp_path / "run" / "reactor.pid"
    result = subprocess.run(reactor_argv("--no-config", "--port", "0", "--pidfile",
                                         str(pidfile)), cwd=tmp_path, env=server_env(),
                            capture_output=True, text=True, timeout=10)
    assert result.returncode == 2
    assert result.stderr == (f"reactor: cannot create pid file {pidfile}: directory"
                             f" {pidfile.parent} does not exist\n")


# --- teardown on every exit path (in-process) -----------------------------------------------------


def _descriptors() -> set[str]:
    return {os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
            if os.path.exists(f"/proc/self/fd/{fd}")}


def _config(tmp_path: Path, listen: str = "127.0.0.1:0") -> Config:
    return Config(server=ServerConfig(listen=(listen,), pool_threads=3),
                  log=LogConfig(access=str(tmp_path / "access.log"),
                                error=str(tmp_path / "error.log")))


def test_run_restores_signal_handlers_and_leaves_no_threads_or_files(tmp_path: Path) -> None:
    threads, handlers = threading.active_count(), signal.getsignal(signal.SIGINT)
    server = Server(_config(tmp_path))
    assert threading.active_count() == threads + 3  # the pool
    server.loop.call_later(0.05, os.kill, os.getpid(), signal.SIGTERM)  # a real signal
    assert server.run() == 0
    assert threading.active_count() == threads
    assert signal.getsignal(signal.SIGINT) is handlers
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert signal.set_wakeup_fd(-1) == -1  # the loop's wake-up fd was released
    assert not {str(tmp_path / "access.log"), str(tmp_path / "error.log")} & _descriptors()
    assert [line["event"] for line in read_json_lines(tmp_path / "error.log")][-2:] == [
        "stopping", "stopped"]


def test_a_failed_construction_closes_what_it_opened(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    threads, descriptors = threading.active_count(), _descriptors()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        with pytest.raises(ListenError, match="Address already in use"):
            Server(_config(tmp_path, busy))

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("assembly failed after the loop started")

    monkeypatch.setattr("reactor.ops.server.HttpServer", broken)
    with pytest.raises(RuntimeError):
        Server(_config(tmp_path))  # the loop and its pool existed by then
    assert threading.active_count() == threads
    assert _descriptors() == descriptors
