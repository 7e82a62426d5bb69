"""A real browser: headless Chromium loads the chat page (examples/chat) from reactor, sends
and receives over the WebSocket; the test reads the DOM over the DevTools protocol (with our
own WebSocket client) and checks that no console error or exception occurred."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reactor.proto.websocket import Message
from tests.wsclient import WsClient

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed (make test-tools installs it as root)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--remote-debugging-port=0", "about:blank"]
TIMEOUT_S = 60.0


def load_chat_example() -> Any:
    spec = importlib.util.spec_from_file_location("chat_example",
                                                  ROOT / "examples" / "chat" / "chat.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def chat_server(tmp_path: Path) -> Iterator[tuple[str, int]]:
    chat = load_chat_example()
    server = chat.make_server("127.0.0.1:0", access=str(tmp_path / "access.log"),
                              error=str(tmp_path / "error.log"))
    thread = threading.Thread(target=server.run, kwargs={"install_signals": False},
                              daemon=True)
    thread.start()
    yield server.addresses[0]
    server.loop.call_soon_threadsafe(server.stop)
    thread.join(15)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[str]:
    """Chromium with remote debugging; yields the page's DevTools WebSocket URL."""
    profile = tmp_path / "profile"
    profile.mkdir()
    assert CHROMIUM is not None
    process = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        endpoint = None
        assert process.stderr is not None
        deadline = time.monotonic() + TIMEOUT_S
        while endpoint is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            if line.startswith("DevTools listening on "):
                endpoint = line.split()[-1]
        assert endpoint is not None, "chromium did not start its DevTools endpoint"
        threading.Thread(target=process.stderr.read, daemon=True).start()  # keep draining
        port = endpoint.split(":")[2].split("/")[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as reply:
            pages = [t for t in json.load(reply) if t["type"] == "page"]
        yield pages[0]["webSocketDebuggerUrl"]
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class DevTools:
    """Just enough of the Chrome DevTools protocol, over reactor's WebSocket client."""

    def __init__(self, url: str) -> None:
        host_port, _, path = url.removeprefix("ws://").partition("/")
        host, _, port = host_port.partition(":")
        self.ws = WsClient(host, int(port), "/" + path, timeout=TIMEOUT_S)
        self.next_id = 0
        self.problems: list[str] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        wanted = self.next_id
        self.ws.send(json.dumps({"id": wanted, "method": method, "params": params}))
        while True:
            event = self.ws.recv(timeout=TIMEOUT_S)
            assert isinstance(event, Message), event
            message = json.loads(event.data)
            if message.get("id") == wanted:
                return message.get("result", {})
            self.note(message)

    def note(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        params = message.get("params", {})
        if method == "Runtime.exceptionThrown":
            self.problems.append(json.dumps(params["exceptionDetails"])[:500])
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.problems.append(json.dumps(params.get("args"))[:500])
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.problems.append(params["entry"].get("text", "")[:500])

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str) -> Any:
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {expression}; page log: "
                             f"{self.evaluate('document.body.innerText')!r}")


def test_chat_page_in_chromium(chat_server: tuple[str, int], browser: str) -> None:
    host, port = chat_server
    tools = DevTools(browser)
    try:
        tools.call("Runtime.enable")
        tools.call("Log.enable")
        tools.call("Page.navigate",
                   url=f"http://{host}:{port}/?room=test&say=hello%20from%20chromium")
        tools.wait_for("document.getElementById('status').textContent === 'connected'")
        # the browser's own message came back through the room's broadcast
        tools.wait_for("[...document.querySelectorAll('#log li.message')]"
                       ".some(li => li.textContent === 'hello from chromium')")
        with WsClient(host, port, "/chat/test") as peer:
            peer.send("hi browser")
            tools.wait_for("[...document.querySelectorAll('#log li.message')]"
                           ".some(li => li.textContent === 'hi browser')")
            seen: list[str] = []
            while "hi browser" not in seen:
                event = peer.recv()
                assert isinstance(event, Message)
                seen.append(json.loads(event.data).get("text", ""))
        tools.wait_for("[...document.querySelectorAll('#log li.info')]"
                       ".some(li => li.textContent.startsWith('left: 1'))")
        tools.evaluate("1")  # collect events that arrived meanwhile
        assert tools.problems == []
    finally:
        tools.ws.shutdown()
