"""The README's promises that code can check: the settings table matches the declarations,
and its configuration snippets, Python snippets and chat example run as written."""

from __future__ import annotations

import io
import json
import signal
import sys
from pathlib import Path

from reactor.cli import build_parser
from reactor.ops.config import render_settings_table, run_check_config
from reactor.proto.websocket import Event, Message
from tests.ops.serverproc import (
    REPO,
    ServeProcess,
    get,
    stop_gracefully,
)
from tests.wsclient import WsClient

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_settings_table_is_the_rendered_declarations() -> None:
    text = README.read_text()
    start = text.index("<!-- settings-table:")
    start = text.index("\n", start) + 1
    end = text.index("<!-- /settings-table -->")
    assert text[start:end] == render_settings_table(), (
        "README settings table is stale: regenerate with "
        "`python -m reactor.ops.config settings-table`")


def test_readme_quick_start_is_make_run_and_make_test() -> None:
    text = README.read_text()
    assert "make run" in text and "make test" in text


def test_readme_says_what_make_run_passes() -> None:
    makefile = (REPO / "Makefile").read_text()
    command = next(line for line in makefile.splitlines() if "/bin/reactor serve " in line)
    flags = command.split("/bin/reactor serve ", 1)[1].strip()
    assert "--no-config" in flags.split()  # the built-in defaults, whatever is in /etc
    assert f"`make run` passes `{flags}`" in " ".join(README.read_text().split())


def fenced_blocks(language: str, text: str | None = None) -> list[str]:
    """The README's ```LANGUAGE blocks, in order."""
    parts = (README.read_text() if text is None else text).split(f"```{language}\n")[1:]
    return [part[:part.index("```")] for part in parts]


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def test_every_readme_toml_snippet_passes_check_config(tmp_path: Path) -> None:
    """Each configuration block a reader copies is one `check-config` accepts; the HTTPS one
    names certificate files and is checked with real ones in tests/ops/test_tls_config.py."""
    blocks = [block for block in fenced_blocks("toml") if "/etc/reactor/" not in block]
    assert len(blocks) >= 4
    for number, block in enumerate(blocks):
        config = tmp_path / f"snippet{number}.toml"
        config.write_text(block)
        args = build_parser().parse_args(["check-config", "--config", str(config)])
        err = io.StringIO()
        assert run_check_config(args, {}, stdout=io.StringIO(), stderr=err) == 0, (
            block, err.getvalue())


def text_of(event: Event | None) -> str | bytes:
    assert isinstance(event, Message), event
    return event.data


def serve_module(tmp_path: Path, source: str) -> ServeProcess:
    """`reactor serve --app readme_snippet:app` from a directory holding `source` as
    readme_snippet.py (the working directory is on the import path, as the README says)."""
    (tmp_path / "readme_snippet.py").write_text(source)
    return ServeProcess(["--no-config", "--app", "readme_snippet:app", "--port", "0",
                         "--log", str(tmp_path / "access.log")], cwd=tmp_path)


def test_the_readme_native_api_snippet_serves(tmp_path: Path) -> None:
    [block] = fenced_blocks("python", section("Your code on reactor"))
    proc = serve_module(tmp_path, block)
    try:
        port = proc.port
        user = get(port, "/users/7")
        assert (user.status, json.loads(user.body)) == (200, {"id": 7})
        assert get(port, "/users/seven").status == 404
    finally:
        stop_gracefully(proc)


def test_the_readme_websocket_snippet_serves_a_room(tmp_path: Path) -> None:
    """The snippet adds a route to "the built-in App"; here that is `app = App()`."""
    [block] = fenced_blocks("python", section("WebSockets"))
    proc = serve_module(tmp_path, "from reactor import App\n\napp = App()\n\n" + block)
    try:
        port = proc.port
        with WsClient("127.0.0.1", port, "/chat/lobby") as alice:
            alice.send("alice here")  # back to her: her on_open ran, she is in the room
            assert text_of(alice.recv()) == "alice here"
            with WsClient("127.0.0.1", port, "/chat/lobby") as bob:
                bob.send("hello, room")  # after bob's own on_open, in order
                assert text_of(bob.recv()) == "hello, room" == text_of(alice.recv())
    finally:
        stop_gracefully(proc)


def test_the_chat_example_runs_as_the_readme_shows(tmp_path: Path) -> None:
    """`.venv/bin/python examples/chat/chat.py --port 8000`, on a free port: the line it
    prints, the page, a room over WebSocket, and Ctrl-C."""
    command = next(line for line in section("WebSockets").splitlines()
                   if "examples/chat/chat.py" in line)
    words = command.split("#")[0].split()
    assert words[1:] == ["examples/chat/chat.py", "--port", "8000"], command
    proc = ServeProcess((), cwd=REPO, argv=[sys.executable, words[1], "--port", "0"])
    try:
        assert proc.proc.stdout is not None
        printed = proc.proc.stdout.readline().decode()
        assert printed == f"chat: http://127.0.0.1:{proc.port}/?room=lobby\n"
        port = proc.port
        page = get(port, "/?room=lobby")
        assert page.status == 200 and b"chat.js" in page.body
        assert get(port, "/chat.js").status == 200
        with WsClient("127.0.0.1", port, "/chat/lobby") as alice:
            assert json.loads(text_of(alice.recv()))["kind"] == "joined"
            alice.send("hi all")
            assert json.loads(text_of(alice.recv())) == {
                "room": "lobby", "kind": "message", "text": "hi all"}
        proc.send_signal(signal.SIGINT)
        assert proc.wait() == 0
    finally:
        proc.stop()
