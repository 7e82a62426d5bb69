"""`reactor serve` as a real subprocess: start-up line, usage errors, SIGTERM, access log."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reactor import __version__
from tests.conftest import read_log

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 10.0


def clean_env() -> dict[str, str]:
    """The environment without REACTOR_* settings, so only the command line counts."""
    return {k: v for k, v in os.environ.items() if not k.startswith("REACTOR_")}


def reactor(*args: str, **kwargs) -> subprocess.Popen:  # type: ignore[no-untyped-def]
    return subprocess.Popen([sys.executable, "-m", "reactor", *args], cwd=ROOT,
                            env=clean_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kwargs)


def run_reactor(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reactor", *args], cwd=ROOT, env=clean_env(),
                          capture_output=True, text=True, timeout=START_TIMEOUT_S)


@pytest.fixture
def served(tmp_path):  # type: ignore[no-untyped-def]
    """A `reactor serve` process; yields (process, first stderr line as JSON, paths)."""
    files = tmp_path / "files"
    files.mkdir()
    log = tmp_path / "access.log"
    process = reactor("serve", "--port", "0", "--no-config", "--directory", str(files),
                      "--log", str(log))
    try:
        first = process.stderr.readline()  # type: ignore[union-attr]
        assert first, process.communicate(timeout=START_TIMEOUT_S)
        yield process, json.loads(first), files, log
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=START_TIMEOUT_S)


def test_serve_announces_where_it_listens(served):
    process, first, _, _ = served
    assert first["event"] == "listening"
    assert first["host"] == "127.0.0.1"
    assert isinstance(first["port"], int) and first["port"] > 0
    assert first["version"] == __version__
    assert first["url"] == f"http://127.0.0.1:{first['port']}"
    assert process.poll() is None


def test_serve_answers_and_stops_cleanly_on_sigterm(served):
    process, first, files, log = served
    (files / "hello.txt").write_bytes(b"hello from disk")
    connection = http.client.HTTPConnection("127.0.0.1", first["port"], timeout=5)
    try:
        connection.request("GET", "/echo/cli", headers={"User-Agent": "cli-test"})
        response = connection.getresponse()
        assert (response.status, response.read()) == (200, b"cli")
        connection.request("GET", "/files/hello.txt")
        response = connection.getresponse()
        assert (response.status, response.read()) == (200, b"hello from disk")
        # the connection stays open and idle: a graceful stop closes it without waiting
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=START_TIMEOUT_S) == 0
    finally:
        connection.close()
    lines = [line for line in read_log(log) if line["event"] == "request"]
    assert [(line["method"], line["path"], line["status"]) for line in lines] == [
        ("GET", "/echo/cli", 200), ("GET", "/files/hello.txt", 200)]
    assert lines[0]["user_agent"] == "cli-test"
    rest = process.stderr.read().decode()  # type: ignore[union-attr]
    events = [json.loads(line)["event"] for line in rest.splitlines() if line.strip()]
    assert events[-2:] == ["stopping", "stopped"]


def test_sigterm_lets_a_request_in_progress_finish(served):
    process, first, files, _ = served
    with socket.create_connection(("127.0.0.1", first["port"]), timeout=5) as sock:
        sock.sendall(b"POST /files/late HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n01234")
        time.sleep(0.2)  # the server has read the head: the request is under way
        process.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        assert process.poll() is None  # still waiting for the rest of the body
        sock.sendall(b"56789")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 201 ")
    assert b"\r\nConnection: close\r\n" in answer
    assert process.wait(timeout=START_TIMEOUT_S) == 0
    assert (files / "late").read_bytes() == b"0123456789"


def test_sigint_stops_too(served):
    process, _, _, _ = served
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=START_TIMEOUT_S) == 0


def test_missing_directory_is_a_one_line_usage_error(tmp_path):
    result = run_reactor("serve", "--port", "0", "--no-config", "--directory",
                         "/does/not/exist", "--log", str(tmp_path / "a.log"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("reactor: ") and "/does/not/exist" in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "a.log").exists() or (tmp_path / "a.log").read_text() == ""


@pytest.mark.parametrize("args", [
    ("serve", "--no-such-flag"),
    ("serve", "--port", "70000", "--no-config"),
    (),
])
def test_bad_command_line_exits_2(args):
    result = run_reactor(*args)
    assert result.returncode == 2
    assert result.stderr.startswith("reactor")
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_venv_script_entry_point():
    script = ROOT / ".venv" / "bin" / "reactor"
    if not script.exists():
        pytest.skip("no console script installed in .venv")
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True,
                            env=clean_env(), timeout=START_TIMEOUT_S)
    assert (result.returncode, result.stdout.strip()) == (0, f"reactor {__version__}")
