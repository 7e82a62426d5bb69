"""Shared fixtures: a real reactor server on 127.0.0.1, port 0, in a background thread.

Error-log guard. Every server a test starts through these helpers (`start_server`,
`running_server`, the static `serve` fixture, `tests.ops.serverproc.ServeProcess`) has its
error log read after the test's fixtures are torn down (servers stopped, logs flushed). A
line at level warning or worse, or any line with a traceback (`exception`), that the test did
not declare fails the test at teardown, showing the line. Info lines (listening, stopping,
reloaded...) never fail. The helpers themselves allow what their own setup causes:
`files-disabled` for a server started without a files directory, and `running-as-root`
for a `ServeProcess` when the tests run as root. Declare the lines a test provokes on
purpose, either

    @pytest.mark.expect_log("handler-error")                 # event names, any server
    @pytest.mark.expect_log({"event": "reload-ignored", "reason": "..."}, required=False)

or, scoped to one server and to lines logged from the start of the block on,

    with expect_log(running_server, "handler-error", path="/boom"):
        ...

Keyword fields must equal the line's (a compiled `re.Pattern` is searched in it instead).
A declared line is required: the marker fails the test when no server logged it, and the
block waits up to 10 s for it on exit; pass `required=False` for a line that may or may not
come. The machinery lives in tests/logguard.py.

Hypothesis profiles: "ci" (the default: short, no deadline) and "fuzz" (thousands of
examples), chosen with HYPOTHESIS_PROFILE=fuzz; `make fuzz` runs every hypothesis test
(auto-marked `fuzz`) with the long one.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings

from reactor.ops.server import Server
from reactor.ops.settings import Config
from tests import logguard
from tests.logguard import expect_log as expect_log  # tests import it from here

if TYPE_CHECKING:
    from tests.ops.serverproc import ServeProcess  # it imports this module

pytest_plugins = ["pytester"]  # tests/test_logguard.py runs small inner test sessions

# ---- hypothesis profiles ----------------------------------------------------------------------

settings.register_profile(
    "ci", max_examples=100, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile(
    "fuzz", max_examples=5000, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "expect_log(*events, required=True): error-log lines (event names or field "
        "dicts) this test provokes on purpose; see tests/conftest.py")
    config.addinivalue_line(
        "markers", "fuzz: a hypothesis property test (`make fuzz` runs them with the long "
        "profile)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every hypothesis test is a `fuzz` test (`make fuzz` runs them with the long profile)."""
    for item in items:
        if getattr(getattr(item, "obj", None), "is_hypothesis_test", False):
            item.add_marker(pytest.mark.fuzz)


# ---- the error-log guard (see the module docstring) -------------------------------------------

_GUARD = pytest.StashKey[logguard.LogGuard]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    guard = logguard.push()
    item.stash[_GUARD] = guard
    for mark in item.iter_markers("expect_log"):
        guard.expectations += logguard.marker_expectations(mark.args, dict(mark.kwargs))
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, object, object]:
    try:
        result = yield
    finally:
        guard = item.stash.get(_GUARD, None)
        problems: list[str] = []
        if guard is not None:
            logguard.pop(guard)
            problems = guard.close()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)
    return result


class RunningServer:
    """A live server: `host`, `port`, `server` (the Server object) and its log files."""

    def __init__(self, server: Server, thread: threading.Thread, access_log: Path,
                 error_log: Path) -> None:
        self.server = server
        self.thread = thread
        self.host, self.port = server.addresses[0]
        self.access_log = access_log
        self.error_log = error_log

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def call(self, fn, *args) -> None:  # type: ignore[no-untyped-def]
        """Run `fn(*args)` on the server's loop thread."""
        self.server.loop.call_soon_threadsafe(fn, *args)

    def stop(self) -> None:
        if self.thread.is_alive():
            self.call(self.server.stop)
            self.thread.join(10)

    def error_log_text(self) -> str:
        """The error log written so far ("" when it goes to stderr/stdout or nowhere)."""
        target = self.server.config.log.error
        if target in ("-", "stderr", "off"):
            return ""
        try:
            return Path(target).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_label(self) -> str:
        return f"server {self.host}:{self.port} ({self.server.config.log.error})"


def start_server(tmp_path: Path, **sections: dict) -> RunningServer:
    """Start a server with `Config` sections overridden, e.g. limits={"max_body_bytes": 10}."""
    access_log = tmp_path / "access.log"
    error_log = tmp_path / "error.log"
    config = Config()
    overrides: dict[str, dict[str, object]] = {
        "server": {"listen": ("127.0.0.1:0",)},
        "log": {"access": str(access_log), "error": str(error_log)}}
    for name, values in sections.items():
        overrides.setdefault(name, {}).update(values)
    for name, values in overrides.items():
        config = dataclasses.replace(
            config, **{name: dataclasses.replace(getattr(config, name), **values)})
    server = Server(config)
    thread = threading.Thread(target=server.run, kwargs={"install_signals": False},
                              name="reactor-test-server", daemon=True)
    thread.start()
    running = RunningServer(server, thread, access_log, error_log)
    # A server without a files directory says so once at start: the helper's doing.
    logguard.track(running, *(["files-disabled"] if config.files.directory is None else []))
    return running


@pytest.fixture
def certs(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A throw-away CA in the test's directory (`tests.conn.tlskit.Certs`)."""
    from tests.conn.tlskit import Certs  # trustme: only the TLS tests need it

    return Certs(tmp_path / "certs")


@pytest.fixture(params=["unnamed", "named"])
def upload_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both kinds of upload file, for a server in this process: "unnamed" (O_TMPFILE, where
    the system has it) and "named" (`.upload-*`, the fallback, by its module switch)."""
    from reactor.app import newfile
    if request.param == "unnamed" and not newfile.UNNAMED:
        pytest.skip("no O_TMPFILE or /proc/self/fd here")
    monkeypatch.setattr(newfile, "UNNAMED", request.param == "unnamed")
    return str(request.param)


@pytest.fixture
def ipv6() -> None:
    """Skips the test where this host cannot listen on the IPv6 loopback ::1."""
    if not socket.has_ipv6:
        pytest.skip("this Python has no IPv6 support (socket.has_ipv6 is false)")
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"cannot bind ::1 here: {exc}")


def free_port(host: str) -> int:
    """A TCP port free on `host` just now (for a test that needs to know it in advance)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def files_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "files"
    directory.mkdir()
    return directory


@pytest.fixture
def running_server(tmp_path: Path, files_dir: Path) -> Iterator[RunningServer]:
    """The server with the built-in defaults and `files_dir` as its files directory."""
    running = start_server(tmp_path, files={"directory": files_dir})
    yield running
    running.stop()


# ---- raw-socket helpers for the integration tests (tests/conn, tests/app) --------------------

RAW_TIMEOUT_S = 5.0
# How long a test waits for something the server should do (close, time out, call back):
# generous, so a slow, shared machine never fails a test; only an event that never comes does.
EVENT_WAIT_S = 10.0


class RawResponse:
    """One response read off a raw socket: status, header fields in order, body, raw bytes."""

    def __init__(self, status: int, reason: str, fields: list[tuple[str, str]], body: bytes,
                 raw: bytes) -> None:
        self.status = status
        self.reason = reason
        self.fields = fields
        self.body = body
        self.raw = raw

    def header(self, name: str) -> str | None:
        """The value of the first field called `name` (case-insensitive), or None."""
        values = self.headers(name)
        return values[0] if values else None

    def headers(self, name: str) -> list[str]:
        name = name.lower()
        return [value for key, value in self.fields if key.lower() == name]

    def __repr__(self) -> str:
        return f"<RawResponse {self.status} {self.fields!r} body={self.body[:60]!r}>"


class RawClient:
    """A blocking client socket with a receive buffer, to read responses byte-exactly.

    Every read has a timeout, so a server that fails to answer fails the test instead of
    hanging it.
    """

    def __init__(self, host: str, port: int, timeout: float = RAW_TIMEOUT_S) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""

    @classmethod
    def to(cls, running: RunningServer, timeout: float = RAW_TIMEOUT_S) -> RawClient:
        return cls(running.host, running.port, timeout)

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def read_until(self, marker: bytes) -> bytes:
        """Bytes up to and including `marker`; AssertionError when the peer closes first."""
        while marker not in self.buffer:
            if not self._fill():
                raise AssertionError(f"connection closed before {marker!r}; got {self.buffer!r}")
        end = self.buffer.index(marker) + len(marker)
        data, self.buffer = self.buffer[:end], self.buffer[end:]
        return data

    def read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self._fill():
                raise AssertionError(f"connection closed after {len(self.buffer)} of {size} "
                                     "body bytes")
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_response(self, *, head: bool = False) -> RawResponse:
        """One response; `head=True` for the answer to HEAD (Content-Length, but no body)."""
        raw_head = self.read_until(b"\r\n\r\n")
        status_line, *lines = raw_head[:-4].decode("latin-1").split("\r\n")
        version, status, reason = [*status_line.split(" ", 2), ""][:3]
        assert version == "HTTP/1.1", status_line
        fields = []
        for line in lines:
            name, sep, value = line.partition(":")
            assert sep and name == name.strip(), f"bad field line {line!r}"
            fields.append((name, value.strip()))
        response = RawResponse(int(status), reason, fields, b"", raw_head)
        length = response.header("content-length")
        if not head and length is not None and response.status not in (204, 304):
            response.body = self.read_exactly(int(length))
            response.raw += response.body
        return response

    def read_to_eof(self) -> bytes:
        """Everything until the server closes (fails on timeout if it never does)."""
        while self._fill():
            pass
        data, self.buffer = self.buffer, b""
        return data

    def is_closed_by_peer(self) -> bool:
        """True when the server has closed: nothing buffered and recv returns b""."""
        return not self.buffer and not self._fill()


def request_bytes(method: str, target: str, headers: dict[str, str] | None = None,
                  body: bytes = b"", *, version: str = "HTTP/1.1", host: bool = True) -> bytes:
    """A request serialized by hand (Content-Length added when there is a body)."""
    lines = [f"{method} {target} {version}"]
    fields = dict(headers or {})
    if host and "Host" not in fields:
        fields = {"Host": "test", **fields}
    if body and "Content-Length" not in fields and "Transfer-Encoding" not in fields:
        fields["Content-Length"] = str(len(body))
    lines += [f"{name}: {value}" for name, value in fields.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def read_log(path: Path) -> list[dict]:
    """The JSON lines of a log file written so far."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for_log(path: Path, predicate, count: int = 1,  # type: ignore[no-untyped-def]
                 timeout: float = RAW_TIMEOUT_S) -> list[dict]:
    """Poll `path` until `count` lines satisfy `predicate`; returns those lines."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [line for line in read_log(path) if predicate(line)]
        if len(lines) >= count:
            return lines
        if time.monotonic() > deadline:
            raise AssertionError(f"{count} matching log lines not found in {read_log(path)!r}")
        time.sleep(0.01)


def on_loop(running: RunningServer, fn, *args, timeout: float = RAW_TIMEOUT_S):  # type: ignore[no-untyped-def]
    """Run `fn(*args)` on the server's loop thread and return its result."""
    done = threading.Event()
    outcome: list = []

    def run() -> None:
        try:
            outcome.append((fn(*args), None))
        except BaseException as exc:
            outcome.append((None, exc))
        finally:
            done.set()

    running.call(run)
    assert done.wait(timeout), "the loop thread did not run the call"
    result, error = outcome[0]
    if error is not None:
        raise error
    return result


def wait_until(predicate, timeout: float = RAW_TIMEOUT_S, interval: float = 0.01) -> bool:  # type: ignore[no-untyped-def]
    """Poll `predicate()` until it is true (returns True) or the deadline passes (False)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def fetch(running: RunningServer, method: str, target: str, body: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request with http.client on a fresh connection: (status, headers, body)."""
    return exchange(http.client.HTTPConnection(running.host, running.port, timeout=5),
                    method, target, body, headers)


def exchange(connection: http.client.HTTPConnection, method: str, target: str,
             body: bytes | None = None, headers: dict[str, str] | None = None
             ) -> tuple[int, dict[str, str], bytes]:
    """One request on `connection` (closed afterwards): (status, headers, body)."""
    try:
        connection.request(method, target, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def upload_files(directory: Path, *pids: int) -> list[str]:
    """The files uploads in progress are writing in `directory`: the named `.upload-*`
    files in it, and the unnamed (O_TMPFILE) files the processes `pids` (default: this one)
    hold open there, which `/proc/PID/fd` shows as `DIRECTORY/#INODE (deleted)`."""
    real = os.path.realpath(directory)
    found = [os.path.join(real, name) for name in os.listdir(directory)
             if name.startswith(".upload-")]
    for pid in pids or (os.getpid(),):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except FileNotFoundError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except FileNotFoundError:
                continue
            head, name = os.path.split(target)
            if head == real and name.startswith("#") and name.endswith(" (deleted)"):
                found.append(target)
    return sorted(found)


# ---- a small file system of our own (root only) ------------------------------------------------

TMPFS_BYTES = 1024 * 1024


def mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (a disk to fill), unmounted at teardown whatever happened."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    point = tmp_path / "small"
    point.mkdir()
    done = mount("-t", "tmpfs", "-o", f"size={TMPFS_BYTES},mode=0755", "tmpfs", str(point))
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


@pytest.fixture
def started() -> Iterator[list[ServeProcess]]:
    """`reactor serve` processes (tests/ops/serverproc.py) a test started: stopped at
    teardown if still running."""
    processes: list[ServeProcess] = []
    yield processes
    for process in processes:
        process.stop()
