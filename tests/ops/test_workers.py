"""`server.workers = N`: a master process supervising N forked workers, tested for real."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.ops.serverproc import (
    ServeProcess,
    base_config,
    get,
    read_json_lines,
    stop_gracefully,
    wait_until,
    write_config,
)


def children(pid: int) -> set[int]:
    """Live child pids of `pid` (from /proc), zombies excluded."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry))
    return found


@pytest.fixture
def workers_server(tmp_path: Path):  # type: ignore[no-untyped-def]
    config = write_config(tmp_path / "reactor.toml",
                          base_config(tmp_path, server={"workers": 2}))
    process = ServeProcess(["--config", str(config)], cwd=tmp_path)
    try:
        yield process, tmp_path
    finally:
        stop_gracefully(process)  # a test that failed early still stops the master


@pytest.mark.expect_log("worker-died")
def test_two_workers_serve_one_port_and_a_dead_worker_is_replaced(workers_server):
    process, tmp_path = workers_server
    port = process.port
    process.wait_event("workers-started")
    master = process.proc.pid
    first = children(master)
    assert len(first) == 2
    for i in range(20):
        assert get(port, f"/echo/{i}").body == str(i).encode()
    # buffered lines reach the file within LOG_FLUSH_DELAY_S; a SIGKILL would drop them
    assert wait_until(lambda: len(read_json_lines(tmp_path / "access.log")) >= 20)
    victim = sorted(first)[0]
    os.kill(victim, signal.SIGKILL)
    died = process.wait_event("worker-died")
    assert (died["level"], died["pid"], died["signal"]) == ("error", victim, "SIGKILL")
    assert wait_until(lambda: len(children(master)) == 2 and victim not in children(master))
    assert get(port, "/echo/after").body == b"after"
    process.send_signal(signal.SIGTERM)
    assert process.wait() == 0
    assert children(master) == set()
    # Whole JSON lines from both workers in one shared file (read_json_lines parses each).
    lines = [r for r in read_json_lines(tmp_path / "access.log") if r.get("event") == "request"]
    assert sorted(r["path"] for r in lines) == sorted(
        [f"/echo/{i}" for i in range(20)] + ["/echo/after"])


def test_sighup_replaces_every_worker(workers_server):
    process, _tmp_path = workers_server
    port = process.port
    process.wait_event("workers-started")
    master = process.proc.pid
    before = children(master)
    process.send_signal(signal.SIGHUP)
    process.wait_event("reloaded")
    assert wait_until(lambda: len(children(master)) == 2 and not children(master) & before)
    assert get(port, "/echo/reloaded").body == b"reloaded"
    process.send_signal(signal.SIGTERM)
    assert process.wait() == 0


@pytest.mark.expect_log("reload-failed")
def test_a_failed_reload_under_workers_is_an_error_line_and_keeps_serving(workers_server):
    process, tmp_path = workers_server
    port = process.port
    process.wait_event("workers-started")
    (tmp_path / "reactor.toml").write_text("[limits]\nmax_body_bytes = -5\n")
    process.send_signal(signal.SIGHUP)
    failed = process.wait_event("reload-failed")
    assert failed["level"] == "error"
    assert "limits.max_body_bytes" in failed["reason"]
    assert get(port, "/echo/still").body == b"still"
    process.send_signal(signal.SIGTERM)  # the workers hold stderr: stop them all in order
    assert process.wait() == 0


@pytest.mark.expect_log("reload-needs-restart")
def test_a_reload_changing_the_worker_count_warns(workers_server):
    process, tmp_path = workers_server
    process.wait_event("workers-started")
    write_config(tmp_path / "reactor.toml", base_config(tmp_path, server={"workers": 3}))
    process.send_signal(signal.SIGHUP)
    warning = process.wait_event("reload-needs-restart")
    assert (warning["level"], warning["settings"]) == ("warning", ["server.workers"])
    process.wait_event("reloaded")
    process.send_signal(signal.SIGTERM)
    assert process.wait() == 0


def test_usr1_to_workers_still_starting_does_not_kill_them(workers_server):
    """`killall -USR1 reactor` (a logrotate) during a reload reaches the new workers before
    their handlers are in: they must reopen their logs later, not die of it (the reload
    failed)."""
    process, _tmp_path = workers_server
    process.wait_event("workers-started")
    master = process.proc.pid
    process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while not process.events("reloaded") and not process.events("reload-failed"):
        assert time.monotonic() < deadline, "the reload did not end"
        for pid in children(master):
            try:
                os.kill(pid, signal.SIGUSR1)
            except ProcessLookupError:
                pass
        time.sleep(0.001)
    assert process.events("reloaded") and not process.events("reload-failed")
    assert get(process.port, "/echo/after").body == b"after"
    process.send_signal(signal.SIGTERM)
    assert process.wait() == 0
