"""`reactor serve --daemon` for real: detaching, the pid file, start-up errors through the
detach, and the user switch after binding."""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reactor.ops.daemon import PidFile, process_alive
from tests.ops.serverproc import (
    ServeProcess,
    base_config,
    get,
    post,
    reactor_argv,
    read_json_lines,
    server_env,
    wait_until,
    write_config,
)


def daemon_config(tmp_path: Path, **overrides: dict) -> Path:
    sections = base_config(tmp_path, log={"error": str(tmp_path / "error.log")},
                           daemon={"pidfile": str(tmp_path / "reactor.pid"), "umask": "027"})
    for name, values in overrides.items():
        sections.setdefault(name, {}).update(values)
    return write_config(tmp_path / "reactor.toml", sections)


def start_daemon(tmp_path: Path, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(reactor_argv("--config", str(config), "--daemon"), cwd=tmp_path,
                          env=server_env(), capture_output=True, text=True, timeout=30)


def error_events(tmp_path: Path, event: str) -> list[dict]:
    return [line for line in read_json_lines(tmp_path / "error.log") if line["event"] == event]


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[list[int]]:
    """Daemon pids a test started (it records them); killed at teardown if still alive."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if process_alive(pid):
            os.kill(pid, signal.SIGKILL)


def stop_daemon(pid: int) -> None:
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not process_alive(pid), what=f"daemon {pid} to exit")


def test_daemon_detaches_serves_refuses_a_second_start_and_cleans_up(
        tmp_path: Path, daemons: list[int]) -> None:
    config = daemon_config(tmp_path)
    pidfile = tmp_path / "reactor.pid"

    first = start_daemon(tmp_path, config)
    assert (first.returncode, first.stdout, first.stderr) == (0, "", "")
    pid = int(pidfile.read_text())  # there as soon as the command returned
    daemons.append(pid)
    assert pidfile.read_text() == f"{pid}\n"
    assert process_alive(pid)
    # A new session, of which it is not the leader, so it can never regain a terminal.
    assert os.getsid(pid) not in (os.getsid(0), pid)
    assert os.readlink(f"/proc/{pid}/cwd") == "/"
    assert "Umask:\t0027" in Path(f"/proc/{pid}/status").read_text()
    assert os.readlink(f"/proc/{pid}/fd/0") == os.readlink(f"/proc/{pid}/fd/2") == "/dev/null"

    port = error_events(tmp_path, "listening")[0]["port"]
    response = get(port, "/echo/daemon")
    assert (response.status, response.body) == (200, b"daemon")

    second = start_daemon(tmp_path, config)
    assert second.returncode == 1
    assert second.stderr == (f"reactor: already running: pid file {pidfile} holds pid {pid},"
                             " a live process\n")
    assert get(port, "/echo/still").status == 200

    stop_daemon(pid)
    assert not pidfile.exists()
    assert error_events(tmp_path, "stopped")[0]["exit_code"] == 0
    assert [line["path"] for line in read_json_lines(tmp_path / "access.log")] == [
        "/echo/daemon", "/echo/still"]


def test_daemon_with_workers_reports_ready_at_once_and_its_workers_stop_with_it(
        tmp_path: Path, daemons: list[int]) -> None:
    """The forked workers must not keep the terminal waiting (they used to inherit the
    start-up pipe's write end, and the terminal waited for EOF: failure after 60 s)."""
    config = daemon_config(tmp_path, server={"workers": 2})
    started = time.monotonic()
    result = start_daemon(tmp_path, config)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert time.monotonic() - started < 10
    pid = int((tmp_path / "reactor.pid").read_text())
    daemons.append(pid)
    workers = error_events(tmp_path, "workers-started")[0]["pids"]
    daemons.extend(workers)
    port = error_events(tmp_path, "listening")[0]["port"]
    assert get(port, "/echo/workers").body == b"workers"
    stop_daemon(pid)
    assert not any(process_alive(worker) for worker in workers)
    assert not (tmp_path / "reactor.pid").exists()


def test_daemon_reloads_relative_paths_against_the_start_up_directory(
        tmp_path: Path, daemons: list[int]) -> None:
    """The daemon runs in /, yet `--config reactor.toml` and `--log access.log` still mean
    the files in the directory it was started from, on SIGHUP too."""
    daemon_config(tmp_path, limits={"max_body_bytes": 1000})
    argv = reactor_argv("--config", "reactor.toml", "--daemon", "--log", "access.log",
                        "--directory", ".")
    assert subprocess.run(argv, cwd=tmp_path, env=server_env(), timeout=30).returncode == 0
    pid = int((tmp_path / "reactor.pid").read_text())
    daemons.append(pid)
    port = error_events(tmp_path, "listening")[0]["port"]

    config = tmp_path / "reactor.toml"
    config.write_text(config.read_text().replace("max_body_bytes = 1000", "max_body_bytes = 10"))
    os.kill(pid, signal.SIGHUP)
    reloaded = wait_until(lambda: error_events(tmp_path, "reloaded"), what="reloaded")[0]
    assert reloaded["changed"] == ["limits.max_body_bytes"]
    assert post(port, "/files/big", b"x" * 100).status == 413
    assert post(port, "/files/small", b"x" * 10).status == 201
    assert (tmp_path / "small").read_bytes() == b"x" * 10

    config.write_text(config.read_text().replace(str(tmp_path / "error.log"), "stderr"))
    os.kill(pid, signal.SIGHUP)
    failed = wait_until(lambda: error_events(tmp_path, "reload-failed"), what="reload-failed")
    assert "not possible in daemon mode" in failed[0]["reason"]
    stop_daemon(pid)
    assert len(error_events(tmp_path, "stopped")) == 1
    assert [line["status"] for line in read_json_lines(tmp_path / "access.log")] == [413, 201]


def _finished_child_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


@pytest.mark.parametrize("content", ["999999\n", "finished-child", "not a pid\n", ""])
def test_a_stale_pidfile_does_not_block(tmp_path: Path, daemons: list[int], content: str
                                        ) -> None:
    pidfile = tmp_path / "reactor.pid"
    if content == "finished-child":
        content = f"{_finished_child_pid()}\n"
    pidfile.write_text(content)
    assert start_daemon(tmp_path, daemon_config(tmp_path)).returncode == 0
    pid = int(pidfile.read_text())
    daemons.append(pid)
    stale = error_events(tmp_path, "pidfile-stale-removed")
    assert stale[0]["path"] == str(pidfile)
    assert stale[0]["pid"] == (int(content) if content.strip().isdigit() else 0)
    stop_daemon(pid)
    assert not pidfile.exists()


@pytest.mark.parametrize(("flag", "target"), [("--log", "-"), ("--error-log", "stderr")])
def test_daemon_refuses_log_targets_on_the_terminal(tmp_path: Path, flag: str, target: str
                                                    ) -> None:
    config = daemon_config(tmp_path)
    result = subprocess.run(reactor_argv("--config", str(config), "--daemon", flag, target),
                            cwd=tmp_path, env=server_env(), capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("reactor: --daemon: log.")
    assert "set log.access and log.error to files" in result.stderr
    assert not (tmp_path / "reactor.pid").exists()


def test_a_pidfile_in_a_missing_directory_is_a_config_error_before_detaching(
        tmp_path: Path) -> None:
    pidfile = tmp_path / "missing-dir" / "reactor.pid"
    config = daemon_config(tmp_path, daemon={"pidfile": str(pidfile)})
    result = start_daemon(tmp_path, config)
    assert result.returncode == 2
    assert result.stderr == (f"reactor: cannot create pid file {pidfile}: directory"
                             f" {pidfile.parent} does not exist\n")


@pytest.mark.skipif(not os.access("/sys", os.W_OK), reason="needs a directory that claims to"
                    " be writable but refuses new files (/sys as root)")
def test_a_failure_after_detaching_reaches_the_terminal(tmp_path: Path) -> None:
    pidfile = Path("/sys/reactor-test.pid")  # passes the pre-flight, refused at creation
    config = daemon_config(tmp_path, daemon={"pidfile": str(pidfile)})
    result = start_daemon(tmp_path, config)
    assert result.returncode == 1
    assert result.stderr == f"reactor: cannot create pid file {pidfile}: Permission denied\n"


def test_address_in_use_fails_before_detaching(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = daemon_config(tmp_path, server={"listen": [f"127.0.0.1:{port}"]})
        result = start_daemon(tmp_path, config)
    assert result.returncode == 1
    assert result.stderr == f"reactor: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    assert not (tmp_path / "reactor.pid").exists()


def test_a_zombie_counts_as_gone_for_the_pidfile(tmp_path: Path) -> None:
    child = subprocess.Popen(["true"])
    try:
        wait_until(lambda: "Z" in Path(f"/proc/{child.pid}/stat").read_text().rpartition(")")[2]
                   .split()[:1], what="a zombie")
        assert not process_alive(child.pid)
        pidfile = PidFile(tmp_path / "x.pid")
        (tmp_path / "x.pid").write_text(f"{child.pid}\n")
        assert pidfile.clear_stale() == child.pid
    finally:
        child.wait()
    assert process_alive(os.getpid())


# --- user switch ---------------------------------------------------------------------------------


def _free_privileged_port() -> int:
    for port in range(1000, 600, -1):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.skip("no free port below 1024")


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_user_switch_happens_after_binding_a_privileged_port(tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    port = _free_privileged_port()
    config = write_config(tmp_path / "reactor.toml", base_config(
        tmp_path, server={"listen": [f"127.0.0.1:{port}"]}, daemon={"user": "nobody"}))
    server = ServeProcess(["--config", str(config)], cwd=tmp_path)
    try:
        assert server.port == port
        dropped = server.wait_event("privileges-dropped")
        assert dropped["uid_gid"] == f"{nobody.pw_uid}:{nobody.pw_gid}"
        status = Path(f"/proc/{server.proc.pid}/status").read_text()
        assert f"Uid:\t{nobody.pw_uid}\t{nobody.pw_uid}\t{nobody.pw_uid}\t" in status
        assert f"Gid:\t{nobody.pw_gid}\t{nobody.pw_gid}\t{nobody.pw_gid}\t" in status
        assert get(port, "/echo/nobody").status == 200
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0
    finally:
        server.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_log_files_created_before_the_user_switch_belong_to_that_user(tmp_path: Path) -> None:
    """Created by root before the switch, they stayed root's (0640): the shipped logrotate
    config rotates as the service user (`su reactor reactor`) and could not read them to
    compress them ("Permission denied", every rotation). nginx gives them to its user too."""
    nobody = pwd.getpwnam("nobody")
    access, error = tmp_path / "access.log", tmp_path / "error.log"
    error.write_text("")  # one already there (root's), one the server creates
    config = write_config(tmp_path / "reactor.toml", base_config(
        tmp_path, daemon={"user": "nobody"}, log={"error": str(error)}))
    server = ServeProcess(["--config", str(config)], cwd=tmp_path)
    try:
        wait_until(lambda: "privileges-dropped" in error.read_text(), what="the switch")
        for path in (access, error):
            owner = path.stat()
            assert (owner.st_uid, owner.st_gid) == (nobody.pw_uid, 0), path  # group kept
            assert owner.st_mode & 0o777 == (0o640 if path == access else 0o644)
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0
    finally:
        server.stop()


def test_user_switch_without_root_is_refused(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("as root the switch works")
    config = write_config(tmp_path / "reactor.toml", base_config(tmp_path, daemon={"user": "0"}))
    result = subprocess.run(reactor_argv("--config", str(config)), cwd=tmp_path,
                            env=server_env(), capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "not running as root" in result.stderr
