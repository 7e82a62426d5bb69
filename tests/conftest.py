"""Shared fixtures: a real reactor server on 127.0.0.1, port 0, in a background thread."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from reactor.ops.settings import Config
from reactor.ops.server import Server


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


def start_server(tmp_path: Path, **sections: dict) -> RunningServer:
    """Start a server with `Config` sections overridden, e.g. limits={"max_body_bytes": 10}."""
    access_log = tmp_path / "access.log"
    error_log = tmp_path / "error.log"
    config = Config()
    overrides = {"server": {"listen": ("127.0.0.1:0",)},
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
    return RunningServer(server, thread, access_log, error_log)


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
