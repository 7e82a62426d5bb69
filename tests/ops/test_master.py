"""The master with workers, for real: reloads that really replace the workers (with
/metrics), workers that cannot start, crash back-off, the master's own log, QUIT, a dead
master, a second instance on the same port."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reactor.ops.daemon import process_alive
from tests.conn.tlskit import Certs
from tests.ops.serverproc import (
    Client,
    ServeProcess,
    base_config,
    get,
    post,
    read_json_lines,
    server_env,
    stop_gracefully,
    wait_until,
    write_config,
)
from tests.ops.test_metrics import samples, scrape, two_free_ports
from tests.ops.test_workers import children

PICKY_APP = '''
"""An app that imports fine in the master but cannot be built in a worker while the
file named by PICKY_MARKER exists (or always, without PICKY_MARKER)."""
import os
from reactor.app.application import App

class Picky(App):
    @property
    def compression(self):
        return self._compression

    @compression.setter
    def compression(self, value):  # set once by App() at import, again by each worker
        marker = os.environ.get("PICKY_MARKER")
        if hasattr(self, "_compression") and (marker is None or os.path.exists(marker)):
            raise RuntimeError("this worker refuses to start")
        self._compression = value

app = Picky()

@app.get("/hello", inline=True)
def hello(request):
    return "hello"
'''


def picky_app(tmp_path: Path) -> dict[str, object]:
    (tmp_path / "picky.py").write_text(PICKY_APP)
    return {"native": "picky:app", "path": [str(tmp_path)]}


@pytest.fixture
def started() -> Iterator[list[ServeProcess]]:
    """Servers a test starts; a master still running is stopped gracefully (its workers
    hold the stderr pipe), then killed."""
    processes: list[ServeProcess] = []
    yield processes
    for process in processes:
        stop_gracefully(process)


def serve(started: list[ServeProcess], tmp_path: Path, sections: dict, *args: str,
          env: dict[str, str] | None = None, name: str = "reactor.toml") -> ServeProcess:
    config = write_config(tmp_path / name, sections)
    process = ServeProcess(["--config", str(config), *args], cwd=tmp_path, env=env)
    started.append(process)
    return process


def metric(port: int, name: str, worker: int) -> float:
    status, _, text = scrape("127.0.0.1", port)
    assert status == 200
    return samples(text)[(f"reactor_{name}", (("worker", str(worker)),))]


# --- 1, 5, 8: a reload really replaces the workers, /metrics included -------------------------


def test_sighup_with_metrics_replaces_the_workers_and_they_run_the_new_config(
        started: list[ServeProcess], tmp_path: Path) -> None:
    base = two_free_ports()
    sections = base_config(tmp_path, server={"workers": 2},
                           metrics={"listen": f"127.0.0.1:{base}"})
    process = serve(started, tmp_path, sections)
    port = process.port
    process.wait_event("workers-started")
    master = process.proc.pid
    before = children(master)
    assert post(port, "/nothing", b"x" * 100).status == 404  # routed: within the limit

    sections["limits"] = {"max_body_bytes": 10}
    write_config(tmp_path / "reactor.toml", sections)
    process.send_signal(signal.SIGHUP)
    reloaded = process.wait_event("reloaded")
    assert not process.events("reload-worker-failed")
    assert set(reloaded["pids"]) == wait_until(
        lambda: children(master) if len(children(master)) == 2
        and not children(master) & before else None, what="only the new workers")
    assert post(port, "/nothing", b"x" * 100).status == 413  # the new limit is in force
    for worker in (0, 1):  # each new worker serves its slot's port, counting the reload
        assert metric(base + worker, "reloads_total", worker) == 1
        assert metric(base + worker, "reload_failures_total", worker) == 0
    process.send_signal(signal.SIGTERM)
    assert process.wait() == 0


def test_the_masters_reloaded_line_names_what_changed(started: list[ServeProcess],
                                                     tmp_path: Path) -> None:
    """As one process's: the operator sees what the new workers run differently (it said
    only how many workers and their pids)."""
    sections = base_config(tmp_path, server={"workers": 2})
    process = serve(started, tmp_path, sections)
    process.wait_event("workers-started")
    sections["limits"] = {"max_body_bytes": 10}
    sections["timeouts"]["keepalive_s"] = 3
    write_config(tmp_path / "reactor.toml", sections)
    process.send_signal(signal.SIGHUP)
    assert process.wait_event("reloaded")["changed"] == ["limits.max_body_bytes",
                                                         "timeouts.keepalive_s"]
    process.send_signal(signal.SIGHUP)
    assert process.wait_event("reloaded", count=2)["changed"] == []


def accept_queues(port: int) -> list[int]:
    """The accept-queue length (backlog) of each socket listening on `port` (`ss`)."""
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True,
                         check=True).stdout
    return [int(line.split()[2]) for line in out.splitlines()]


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")
def test_a_reload_under_workers_applies_a_new_backlog(started: list[ServeProcess],
                                                     tmp_path: Path) -> None:
    """The master keeps the slots' sockets across a reload; their accept queues kept the
    backlog they were bound with while `reloaded` named server.backlog as changed (one
    process resizes its live queues)."""
    sections = base_config(tmp_path, server={"workers": 2, "backlog": 100})
    process = serve(started, tmp_path, sections)
    process.wait_event("workers-started")
    assert accept_queues(process.port) == [100, 100]
    sections["server"]["backlog"] = 7
    write_config(tmp_path / "reactor.toml", sections)
    process.send_signal(signal.SIGHUP)
    assert process.wait_event("reloaded")["changed"] == ["server.backlog"]
    assert accept_queues(process.port) == [7, 7]
    assert get(process.port, "/echo/x").status == 200


@pytest.mark.expect_log("reload-listen-unchanged")
def test_an_https_listener_added_by_a_reload_under_workers_waits_for_a_restart(
        started: list[ServeProcess], tmp_path: Path, certs: Certs) -> None:
    """As a plain one: the reload applies the rest and says listeners change only on
    restart. The first new worker bound the added port itself, so its sibling failed with
    "Address already in use" and the whole reload was refused."""
    cert, key = certs.issue("server", "localhost")
    sections = base_config(tmp_path, server={"workers": 2},
                           tls={"cert": str(cert), "key": str(key)})
    process = serve(started, tmp_path, sections)
    process.wait_event("workers-started")
    sections["tls"]["listen"] = [f"127.0.0.1:{two_free_ports()}"]
    sections["limits"] = {"max_body_bytes": 10}
    write_config(tmp_path / "reactor.toml", sections)
    process.send_signal(signal.SIGHUP)
    assert process.wait_event("reloaded")["changed"] == ["limits.max_body_bytes"]
    assert not process.events("reload-failed")
    assert process.events("reload-listen-unchanged")
    assert post(process.port, "/nothing", b"x" * 100).status == 413


def test_a_reload_under_workers_says_the_certificates_were_read_again(
        started: list[ServeProcess], tmp_path: Path, certs: Certs) -> None:
    """A renewal by HUP: one process logs `tls-reloaded`; under workers the master does, once
    the new workers (which read the files afresh) serve -- the operator's confirmation."""
    cert, key = certs.issue("server", "localhost")
    sections = base_config(tmp_path, server={"workers": 2},
                           tls={"cert": str(cert), "key": str(key)})
    process = serve(started, tmp_path, sections)
    process.wait_event("workers-started")
    process.send_signal(signal.SIGHUP)
    line = process.wait_event("tls-reloaded")
    assert (line["trigger"], line["certificates"], line["workers"]) == ("reload", 1, 2)
    assert process.wait_event("reloaded")["changed"] == []


def test_proxy_protocol_turned_on_by_a_reload_under_workers_is_no_listener_change(
        started: list[ServeProcess], tmp_path: Path) -> None:
    """The new workers apply it (a request without the header is refused), so the master
    must not warn `reload-listen-unchanged` -- "listen addresses change only on restart"
    read as if it had not applied."""
    sections = base_config(tmp_path, server={"workers": 2})
    process = serve(started, tmp_path, sections)
    process.wait_event("workers-started")
    sections["proxy"] = {"protocol": True}
    write_config(tmp_path / "reactor.toml", sections)
    process.send_signal(signal.SIGHUP)
    assert process.wait_event("reloaded")["changed"] == ["proxy.protocol"]
    client = Client(process.port)
    try:
        client.send(b"PROXY TCP4 127.0.0.9 127.0.0.1 5000 80\r\n"
                    b"GET /echo/x HTTP/1.1\r\nHost: a\r\n\r\n")
        assert client.read_response().status == 200
    finally:
        client.close()
    process.send_signal(signal.SIGTERM)
    assert process.wait() == 0
    assert not process.events("reload-listen-unchanged")


def test_after_a_reload_every_scrape_reaches_the_new_workers_and_a_stop_refuses_them(
        started: list[ServeProcess], tmp_path: Path) -> None:
    """A slot's old and new worker share its /metrics socket: an old one draining after a
    reload answered scrapes too, so they flipped between its counters (reactor_ready 0,
    the old reload count) and the new worker's -- a counter reset each time. A worker told
    to stop stops answering at once; a stopping master refuses scrapes, never holds them."""
    base = two_free_ports()
    sections = base_config(tmp_path, server={"workers": 2}, timeouts={"drain_s": 1.5},
                           metrics={"listen": f"127.0.0.1:{base}"})
    process = serve(started, tmp_path, sections)
    process.wait_event("workers-started")
    process.send_signal(signal.SIGHUP)
    process.wait_event("reloaded")  # the old workers drain for 1.5 s from now
    for _ in range(10):
        for worker in (0, 1):
            status, _, text = scrape("127.0.0.1", base + worker)
            assert status == 200
            found = samples(text)
            label = (("worker", str(worker)),)
            assert (found[("reactor_reloads_total", label)],
                    found[("reactor_ready", label)]) == (1, 1)
    process.send_signal(signal.SIGTERM)
    process.wait_event("master-stopping")

    def refused() -> bool:
        try:
            scrape("127.0.0.1", base)
        except ConnectionRefusedError:
            return True
        return False
    assert wait_until(refused, timeout=1.0, what="scrapes refused while stopping")
    assert process.wait() == 0


@pytest.mark.expect_log({"event": "reload-failed", "level": "error"})
def test_a_reload_whose_new_workers_cannot_start_says_why_and_keeps_the_old_ones(
        started: list[ServeProcess], tmp_path: Path) -> None:
    base = two_free_ports()
    marker = tmp_path / "refuse"
    sections = base_config(tmp_path, server={"workers": 2}, app=picky_app(tmp_path),
                           metrics={"listen": f"127.0.0.1:{base}"})
    process = serve(started, tmp_path, sections, env=server_env(PICKY_MARKER=str(marker)))
    port = process.port
    process.wait_event("workers-started")
    master = process.proc.pid
    before = children(master)

    marker.touch()  # from now on a new worker cannot build the app
    process.send_signal(signal.SIGHUP)
    failed = process.wait_event("reload-failed")
    assert failed["reason"] == ("a new worker could not start: RuntimeError: this worker"
                                " refuses to start")
    assert not process.events("reloaded")
    assert wait_until(lambda: children(master) == before, what="the old workers alone")
    assert get(port, "/hello").body == b"hello"

    marker.unlink()  # fixed: the next reload succeeds
    process.send_signal(signal.SIGHUP)
    process.wait_event("reloaded")
    for worker in (0, 1):  # the master's counts reach the new workers
        assert metric(base + worker, "reloads_total", worker) == 1
        assert metric(base + worker, "reload_failures_total", worker) == 1
    process.send_signal(signal.SIGTERM)
    assert process.wait() == 0


def test_a_reload_adding_metrics_under_workers_serves_them_without_a_restart_warning(
        started: list[ServeProcess], tmp_path: Path) -> None:
    sections = base_config(tmp_path, server={"workers": 2})
    process = serve(started, tmp_path, sections)
    process.wait_event("workers-started")
    base = two_free_ports()
    write_config(tmp_path / "reactor.toml",
                 {**sections, "metrics": {"listen": f"127.0.0.1:{base}"}})
    process.send_signal(signal.SIGHUP)
    process.wait_event("reloaded")
    assert not process.events("reload-needs-restart")  # the log guard checks it too
    for worker in (0, 1):
        assert metric(base + worker, "ready", worker) == 1
    process.send_signal(signal.SIGTERM)
    assert process.wait() == 0


# --- 2: workers that cannot start ---------------------------------------------------------------


def _taken_after_a_free_one(taken: socket.socket) -> int:
    """Listen on `taken` at a port P whose P - 1 is free now (worker 1's metrics port: if
    another process held it, the line would name it instead); returns P."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        try:
            with socket.socket() as below:
                below.bind(("127.0.0.1", port - 1))
            taken.bind(("127.0.0.1", port))
        except OSError:
            continue
        taken.listen()
        return port
    raise AssertionError("no two free ports in a row")


def test_a_taken_metrics_port_under_workers_is_one_line_and_exit_1(
        started: list[ServeProcess], tmp_path: Path) -> None:
    with socket.socket() as taken:
        port = _taken_after_a_free_one(taken)
        process = serve(started, tmp_path, base_config(
            tmp_path, server={"workers": 2}, metrics={"listen": f"127.0.0.1:{port - 1}"}))
        assert process.wait(20) == 1
    assert process.stderr_text == [
        f"reactor: cannot listen on 127.0.0.1:{port}: Address already in use"]


def test_workers_that_cannot_start_fail_serve_with_their_reason(
        started: list[ServeProcess], tmp_path: Path) -> None:
    process = serve(started, tmp_path, base_config(
        tmp_path, server={"workers": 2}, app=picky_app(tmp_path)))
    assert process.wait(20) == 1
    assert process.stderr_text == ["reactor: RuntimeError: this worker refuses to start"]


@pytest.mark.expect_log("worker-died")
def test_a_worker_that_keeps_failing_is_respawned_with_back_off_and_its_reason(
        started: list[ServeProcess], tmp_path: Path) -> None:
    marker = tmp_path / "refuse"
    process = serve(started, tmp_path, base_config(
        tmp_path, server={"workers": 2}, app=picky_app(tmp_path)),
        env=server_env(PICKY_MARKER=str(marker)))
    process.wait_event("workers-started")
    master = process.proc.pid
    marker.touch()
    victim = min(children(master))
    os.kill(victim, signal.SIGKILL)
    killed = process.wait_event("worker-died")
    assert (killed["pid"], killed["signal"]) == (victim, "SIGKILL")
    first, second = process.wait_event("worker-died", 2), process.wait_event("worker-died", 3)
    for line in (first, second):
        assert line["reason"] == "RuntimeError: this worker refuses to start"
        assert line["slot"] == killed["slot"]
    assert second["respawn_in_s"] == 2 * first["respawn_in_s"] > 0
    marker.unlink()  # the next try starts
    assert wait_until(lambda: len(children(master)) == 2, timeout=15)
    process.send_signal(signal.SIGTERM)
    assert process.wait() == 0


def refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True
    except TimeoutError:  # a queue nobody reads is full
        return False


@pytest.mark.expect_log("worker-died")
def test_no_connection_waits_on_a_slot_in_back_off_while_another_worker_serves(
        started: list[ServeProcess], tmp_path: Path) -> None:
    """While a crashing worker's slot waited out its back-off (up to 30 s), the master kept
    the slot's SO_REUSEPORT socket open: the kernel queued every other new connection there,
    where nobody accepts, and those clients hung while the other worker idled. Now the
    master closes the slot's sockets (its /metrics one too: refused, not held) and binds
    them again, on the same ports, for the respawn."""
    base = two_free_ports()
    marker = tmp_path / "refuse"
    process = serve(started, tmp_path, base_config(
        tmp_path, server={"workers": 2}, app=picky_app(tmp_path),
        metrics={"listen": f"127.0.0.1:{base}"}), env=server_env(PICKY_MARKER=str(marker)))
    port = process.port
    process.wait_event("workers-started")
    master = process.proc.pid
    marker.touch()
    os.kill(min(children(master)), signal.SIGKILL)
    backing_off = wait_until(lambda: next((line for line in process.events("worker-died")
                                           if line["respawn_in_s"] > 0), None))
    slot = backing_off["slot"]
    assert wait_until(lambda: refused(base + slot), timeout=2, what="the slot's sockets closed")
    for i in range(20):  # each would have had an even chance of the dead slot's queue
        client = Client(port, timeout=2)  # a hung one times out: it fails the test
        try:
            assert client.request("GET", "/hello").body == b"hello", i
        finally:
            client.close()
    marker.unlink()  # the respawn binds the slot's ports again and serves them
    assert wait_until(lambda: metric(base + slot, "ready", slot) == 1
                      if not refused(base + slot) else None, what="the respawned worker")
    assert len(children(master)) == 2
    process.send_signal(signal.SIGTERM)
    assert process.wait() == 0


# --- 4: the master's own log --------------------------------------------------------------------


def test_the_master_reopens_its_log_on_usr1_and_follows_a_reload_to_a_new_one(
        started: list[ServeProcess], tmp_path: Path) -> None:
    error_log = tmp_path / "error.log"
    sections = base_config(tmp_path, server={"workers": 2}, log={"error": str(error_log)})
    process = serve(started, tmp_path, sections)
    master = process.proc.pid

    def events(path: Path, event: str) -> list[dict]:
        return [line for line in read_json_lines(path) if line["event"] == event]

    wait_until(lambda: events(error_log, "workers-started"))
    error_log.rename(tmp_path / "error.log.1")
    process.send_signal(signal.SIGUSR1)
    wait_until(lambda: len(events(error_log, "logs-reopened")) == 3, what="3 reopens")
    victim = min(children(master))
    os.kill(victim, signal.SIGKILL)
    died = wait_until(lambda: events(error_log, "worker-died"), what="worker-died")
    assert died[0]["pid"] == victim
    assert not events(tmp_path / "error.log.1", "worker-died")

    moved = tmp_path / "error2.log"
    sections["log"] = {**sections["log"], "error": str(moved), "level": "warning"}
    write_config(tmp_path / "reactor.toml", sections)
    wait_until(lambda: len(children(master)) == 2)
    before = children(master)
    process.send_signal(signal.SIGHUP)
    # the reload is done when the new set serves and the old one is gone (the log moves
    # first: waiting only for error2.log could pick an old worker about to be retired)
    wait_until(lambda: moved.exists() and len(children(master)) == 2
               and not children(master) & before, what="the reload")
    victim = min(children(master))
    time.sleep(0.2)
    os.kill(victim, signal.SIGKILL)
    died = wait_until(lambda: events(moved, "worker-died"), what="worker-died in error2.log")
    assert died[0]["pid"] == victim
    assert not events(moved, "reloaded")  # info: below the new level
    process.send_signal(signal.SIGTERM)
    assert process.wait() == 0


# --- 6: QUIT, and a master that dies ------------------------------------------------------------


def test_sigquit_stops_master_and_workers_gracefully(
        started: list[ServeProcess], tmp_path: Path) -> None:
    pidfile = tmp_path / "reactor.pid"
    process = serve(started, tmp_path, base_config(tmp_path, server={"workers": 2}),
                    "--pidfile", str(pidfile))
    process.wait_event("workers-started")
    workers = children(process.proc.pid)
    process.send_signal(signal.SIGQUIT)
    assert process.wait() == 0
    process.wait_event("master-stopping")
    assert not any(process_alive(pid) for pid in workers)
    assert not pidfile.exists()


def test_a_second_sigterm_skips_the_workers_drain_and_the_master_exits_0(
        started: list[ServeProcess], tmp_path: Path) -> None:
    """As in one process, a second TERM skips the rest of the drain. The master waited
    for its workers with signals blocked: the second TERM reached no worker (they drained
    on), and once they were gone it killed the master itself (exit -15, pid file left)."""
    pidfile = tmp_path / "reactor.pid"
    process = serve(started, tmp_path, base_config(
        tmp_path, server={"workers": 2}, timeouts={"drain_s": 10}), "--pidfile", str(pidfile))
    process.wait_event("workers-started")
    process.send_signal(signal.SIGTERM)
    process.wait_event("draining", 2)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=6) == 0  # not after the 10 s drain
    assert len(process.events("stopped")) == 2
    assert not pidfile.exists()


def test_a_connection_after_the_workers_stopped_accepting_is_refused_not_held(
        started: list[ServeProcess], tmp_path: Path) -> None:
    """While a worker finishes what it has, the master held its own copies of the listening
    sockets: a new connection was queued where nobody accepts, its request unanswered until
    the master exited (then reset). One process refuses it at once; so do workers now."""
    process = serve(started, tmp_path, base_config(tmp_path, server={"workers": 2}))
    port = process.port
    process.wait_event("workers-started")
    with socket.create_connection(("127.0.0.1", port)) as busy:
        busy.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # mid-head: its worker waits for it
        process.send_signal(signal.SIGTERM)
        process.wait_event("stopping", 2)  # both workers stopped accepting
        assert process.proc.poll() is None  # the busy one is still there
        with (pytest.raises(ConnectionRefusedError),
              socket.create_connection(("127.0.0.1", port), timeout=2) as late):
            late.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            late.recv(1)
    assert process.wait() == 0


@pytest.mark.expect_log("master-gone")
def test_workers_stop_when_the_master_is_killed(
        started: list[ServeProcess], tmp_path: Path) -> None:
    process = serve(started, tmp_path, base_config(tmp_path, server={"workers": 2}))
    port = process.port
    process.wait_event("workers-started")
    workers = children(process.proc.pid)
    process.send_signal(signal.SIGKILL)
    try:
        assert process.proc.wait(10) == -signal.SIGKILL
        wait_until(lambda: not any(process_alive(pid) for pid in workers),
                   what="the orphaned workers to exit")
    finally:
        for pid in workers:
            if process_alive(pid):
                os.kill(pid, signal.SIGKILL)
    # the workers' last lines may still be in the pipe when they are gone: read on for them
    wait_until(lambda: len(process.events("master-gone")) == 2,
               what="both workers to say master-gone")
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port)):
        pass


# --- 7: a second instance on the same port -----------------------------------------------------


@pytest.mark.parametrize("second_workers", [2, 1])
def test_a_second_instance_on_a_port_held_by_workers_is_refused(
        started: list[ServeProcess], tmp_path: Path, second_workers: int) -> None:
    first = serve(started, tmp_path, base_config(tmp_path, server={"workers": 2}))
    port = first.port
    first.wait_event("workers-started")
    second = serve(started, tmp_path, base_config(
        tmp_path, server={"workers": second_workers, "listen": [f"127.0.0.1:{port}"]}),
        name="second.toml")
    assert second.wait(20) == 1
    assert second.stderr_text == [
        f"reactor: cannot listen on 127.0.0.1:{port}: Address already in use"]
    first.send_signal(signal.SIGTERM)
    assert first.wait() == 0


@pytest.mark.expect_log("reload-needs-restart")
def test_a_restart_only_app_change_waits_under_workers_too(
        started: list[ServeProcess], tmp_path: Path) -> None:
    """As in one process: a changed [app] target is not imported by the new workers of a
    reload (it waits for a restart, as the warning says), also through a later reload that
    changes something else; the warning comes each time."""
    code = ("def app(environ, start_response):\n"
            "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
            "    return [b'%s']\n")
    (tmp_path / "app_a.py").write_text(code % "a")
    (tmp_path / "app_b.py").write_text(code % "b")
    sections = base_config(tmp_path, server={"workers": 2},
                           app={"wsgi": "app_a:app", "path": [str(tmp_path)]})
    process = serve(started, tmp_path, sections)
    port = process.port
    process.wait_event("workers-started")
    changed = {**sections, "app": {"wsgi": "app_b:app", "path": [str(tmp_path)]}}
    write_config(tmp_path / "reactor.toml", changed)
    process.send_signal(signal.SIGHUP)
    process.wait_event("reloaded")
    assert get(port, "/").body == b"a"
    write_config(tmp_path / "reactor.toml", {**changed, "compression": {"level": 5}})
    process.send_signal(signal.SIGHUP)
    process.wait_event("reloaded", 2)
    warnings = [line["settings"] for line in process.events("reload-needs-restart")]
    assert warnings == [["app.wsgi"], ["app.wsgi"]]
    for _ in range(4):  # either worker
        assert get(port, "/").body == b"a"
    process.send_signal(signal.SIGTERM)
    assert process.wait() == 0
