"""Real `reactor serve` processes for the lifecycle tests: config files, stderr JSON lines,
and a small raw HTTP client. Every wait has a deadline; nothing sleeps for long."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tests import logguard
from tests.conftest import RawClient

REPO = Path(__file__).resolve().parents[2]
DEADLINE_S = 10.0
_FOREIGN_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_PID", "LISTEN_FDS",
                "LISTEN_FDNAMES")


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def write_config(path: Path, sections: dict[str, dict[str, object]]) -> Path:
    """Write `sections` as a TOML file at `path` (replacing it atomically, as an editor
    would) and return the path."""
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in values.items()]
        lines.append("")
    temp = path.with_suffix(".tmp")
    temp.write_text("\n".join(lines))
    temp.replace(path)
    return path


def base_config(tmp_path: Path, **overrides: dict[str, object]) -> dict[str, dict[str, object]]:
    """Port 0 on 127.0.0.1, logs in tmp_path (errors to stderr), small timeouts."""
    sections: dict[str, dict[str, object]] = {
        "server": {"listen": ["127.0.0.1:0"], "pool_threads": 2},
        "timeouts": {"shutdown_s": 10, "keepalive_s": 10, "header_s": 5, "body_s": 5},
        "log": {"access": str(tmp_path / "access.log"), "error": "stderr"},
    }
    for name, values in overrides.items():
        sections.setdefault(name, {}).update(values)
    return sections


def server_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("REACTOR_") and k not in _FOREIGN_ENV}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def reactor_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "reactor", "serve", *args]


def limited_argv(fd_limit: int, *args: str) -> list[str]:
    """`reactor serve ARGS` in a Python whose descriptor limit is `fd_limit` (`ulimit -n`)."""
    code = ("import resource, runpy, sys;"
            f"resource.setrlimit(resource.RLIMIT_NOFILE, ({fd_limit}, {fd_limit}));"
            f"sys.argv = ['reactor', 'serve', *{list(args)!r}];"
            "runpy.run_module('reactor', run_name='__main__', alter_sys=True)")
    return [sys.executable, "-c", code]


def named_uploads_argv(*args: str) -> list[str]:
    """`reactor serve ARGS` whose uploads write named `.upload-*` files, as on a file system
    without O_TMPFILE (`reactor.app.newfile.UNNAMED` off; forked workers inherit it)."""
    code = ("import runpy, sys; import reactor.app.newfile as newfile;"
            "newfile.UNNAMED = False;"
            f"sys.argv = ['reactor', 'serve', *{list(args)!r}];"
            "runpy.run_module('reactor', run_name='__main__', alter_sys=True)")
    return [sys.executable, "-c", code]


def stop_gracefully(process: ServeProcess) -> None:
    """SIGTERM a server still running and wait for it, then reap it: a master killed
    outright would orphan its workers (which hold the stderr pipe)."""
    if process.proc.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.proc.wait(30)
        except subprocess.TimeoutExpired:
            pass
    process.stop()


def wait_until(predicate: Callable[[], Any], timeout: float = DEADLINE_S,
               what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class ServeProcess:
    """`python -m reactor serve ARGS` with stderr collected line by line (JSON parsed).

    Its stderr is the error log the test's log guard checks (tests/conftest.py)."""

    def __init__(self, args: Iterable[str], *, cwd: Path, env: dict[str, str] | None = None,
                 argv: list[str] | None = None) -> None:
        self.proc = subprocess.Popen(
            argv if argv is not None else reactor_argv(*args), cwd=cwd,
            env=env if env is not None else server_env(), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines: list[dict[str, Any]] = []
        self.stderr_text: list[str] = []
        self.stdout = b""
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        # What the helper's setup, not the test, makes the server warn about: base_config()
        # sets no files directory, and the tests may run as root.
        logguard.track(self, "files-disabled", *(["running-as-root"] if os.geteuid() == 0 else []))

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            text = raw.decode("utf-8", "replace").rstrip("\n")
            self.stderr_text.append(text)
            try:
                line = json.loads(text)
            except ValueError:
                line = {"event": None, "text": text}
            self.lines.append(line if isinstance(line, dict) else {"event": None, "text": text})

    def error_log_text(self) -> str:
        return "\n".join(list(self.stderr_text))

    def log_label(self) -> str:
        return f"reactor serve pid {self.proc.pid} (stderr)"

    def events(self, event: str) -> list[dict[str, Any]]:
        return [line for line in list(self.lines) if line.get("event") == event]

    def wait_event(self, event: str, count: int = 1, timeout: float = DEADLINE_S
                   ) -> dict[str, Any]:
        """The `count`-th line with this event (fails early if the process exits first)."""
        def found() -> dict[str, Any] | None:
            lines = self.events(event)
            if len(lines) >= count:
                return lines[count - 1]
            if self.proc.poll() is not None:
                self._reader.join(2)
                lines = self.events(event)
                if len(lines) >= count:
                    return lines[count - 1]
                raise AssertionError(f"exited ({self.proc.returncode}) before {event!r}: "
                                     f"{self.lines!r}")
            return None
        return wait_until(found, timeout, f"{event!r} in {self.lines!r}")

    @property
    def port(self) -> int:
        return int(self.wait_event("listening")["port"])

    def send_signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = DEADLINE_S) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(2)
        return code

    def stop(self) -> None:
        """Teardown: SIGKILL if still running."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(DEADLINE_S)
        self._reader.join(2)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


# --- a raw HTTP/1.1 client ---------------------------------------------------------------------


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.headers} {self.body[:60]!r}>"


class Client(RawClient):
    """One blocking connection (tests.conftest.RawClient) answering the simple Response."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = DEADLINE_S) -> None:
        super().__init__(host, port, timeout)

    # The lifecycle tests' simpler Response (a dict of lower-cased headers) replaces
    # RawResponse here on purpose.
    def read_response(self) -> Response:  # type: ignore[override]
        head = self.read_until(b"\r\n\r\n").decode("latin-1")
        status_line, *fields = head[:-4].split("\r\n")
        headers = {}
        for field in fields:
            name, _, value = field.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            if not self._fill():
                raise AssertionError("closed inside a response body")
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return Response(int(status_line.split()[1]), headers, body)

    def request(self, method: str, path: str, body: bytes = b"",
                headers: dict[str, str] | None = None) -> Response:
        self.send(request_bytes(method, path, body, headers))
        return self.read_response()

    def at_eof(self) -> bool:
        """True when the server closed the connection in order (FIN): recv gives b"".
        A reset raises ConnectionResetError instead."""
        return not self.buffer and not self._fill()


def request_bytes(method: str, path: str, body: bytes = b"",
                  headers: dict[str, str] | None = None) -> bytes:
    fields = {"Host": "test", **(headers or {})}
    if body or method in ("POST", "PUT"):
        fields.setdefault("Content-Length", str(len(body)))
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    return head.encode("latin-1") + b"\r\n" + body


def get(port: int, path: str, **kw: Any) -> Response:
    """One request on a fresh connection."""
    client = Client(port)
    try:
        return client.request("GET", path, **kw)
    finally:
        client.close()


def post(port: int, path: str, body: bytes) -> Response:
    client = Client(port)
    try:
        return client.request("POST", path, body)
    finally:
        client.close()
