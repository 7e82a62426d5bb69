"""`reactor serve --app/--wsgi` as a real process: importing, factories, paths, errors, and
the README's example commands run exactly as written."""

from __future__ import annotations

import http.client
import json
import shlex
import sys
import textwrap
from pathlib import Path

import pytest

from tests.ops.serverproc import REPO, Client, ServeProcess, get, write_config

README = REPO / "README.md"


def run_to_exit(args: list[str], cwd: Path) -> tuple[int, list[str]]:
    proc = ServeProcess(args, cwd=cwd)
    try:
        code = proc.wait()
        return code, [line.get("text", json.dumps(line)) for line in proc.lines]
    finally:
        proc.stop()


def module(directory: Path, name: str, source: str) -> None:
    (directory / f"{name}.py").write_text(textwrap.dedent(source))


@pytest.mark.parametrize(("target", "source", "expected"), [
    ("nosuchmodule_x1:app", None,
     "reactor: cannot import 'nosuchmodule_x1:app': no module named 'nosuchmodule_x1'"),
    ("broken_x2:app", "import os\n1 / 0\n",
     "reactor: cannot import 'broken_x2:app': ZeroDivisionError: division by zero"),
    ("syntax_x3:app", "def f(:\n",
     "reactor: cannot import 'syntax_x3:app': SyntaxError"),
    ("plain_x4:missing", "app = 1\n",
     "reactor: cannot load 'plain_x4:missing': 'plain_x4' has no attribute 'missing'"),
    ("wsgi_x5:app", "def app(environ, start_response):\n    return []\n",
     "reactor: 'wsgi_x5:app' is a function, not a reactor App; to host a WSGI app use --wsgi"),
    ("class_x8:app", "from reactor import App\napp = App\n",
     "reactor: 'class_x8:app' is the class App, not an app (an instance); did you mean"
     " 'class_x8:app()'?"),
    ("factory_x6:make()", "def make():\n    raise RuntimeError('no database')\n",
     "reactor: cannot load 'factory_x6:make()': make() raised RuntimeError: no database"),
])
def test_a_bad_app_is_one_line_and_exit_2(tmp_path: Path, target: str, source: str | None,
                                          expected: str) -> None:
    if source is not None:
        module(tmp_path, target.split(":")[0], source)
    code, lines = run_to_exit(["--app", target, "--port", "0"], tmp_path)
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith(expected), lines
    assert "Traceback" not in lines[0]


def test_a_static_mount_at_the_root_would_hide_the_app(tmp_path: Path) -> None:
    module(tmp_path, "hidden_x7", "from reactor import App\napp = App()\n")
    (tmp_path / "www").mkdir()
    config = write_config(tmp_path / "reactor.toml", {"static": {"root": "www"}})
    code, lines = run_to_exit(["--config", str(config), "--app", "hidden_x7:app",
                               "--port", "0"], tmp_path)
    assert code == 2 and len(lines) == 1 and "would hide the app" in lines[0], lines


def test_factory_from_config_with_app_path_and_static_mount_in_front(tmp_path: Path) -> None:
    code_dir = tmp_path / "src"
    code_dir.mkdir()
    module(code_dir, "factory_app_x8", """\
        from reactor import App, Request

        def make_app():
            app = App()

            @app.get("/who/{name}")
            def who(request: Request, name: str) -> dict:
                return {"name": name}

            @app.get("/static/shadowed")
            def shadowed(request: Request) -> str:
                return "the app"
            return app
        """)
    www = tmp_path / "www"
    www.mkdir()
    (www / "shadowed").write_text("the static file")
    config = write_config(tmp_path / "reactor.toml", {
        "server": {"listen": ["127.0.0.1:0"]},
        "log": {"access": str(tmp_path / "access.log"), "error": "stderr"},
        "app": {"native": "factory_app_x8:make_app()", "path": ["src"]},
        "static": {"root": "www", "prefix": "/static"},
    })
    proc = ServeProcess(["--config", str(config)], cwd=REPO)  # not the app's directory
    try:
        port = proc.port
        assert json.loads(get(port, "/who/ada").body) == {"name": "ada"}
        assert get(port, "/static/shadowed").body == b"the static file"  # mounts first
        assert get(port, "/nope").status == 404
    finally:
        proc.stop()


def readme_commands() -> list[str]:
    text = README.read_text()
    section = text[text.index("## Your code on reactor"):]
    section = section[:section.index("\n## ", 10)]
    return [line.split("#")[0].strip() for line in section.splitlines()
            if line.startswith("reactor serve ")]


def test_the_readme_shows_both_examples() -> None:
    assert readme_commands() == ["reactor serve --app-dir examples --app native_app:app",
                                 "reactor serve --app-dir examples --wsgi flask_app:app"]


def start_example(command: str, tmp_path: Path) -> ServeProcess:
    """The README's command line, run by the installed `reactor` script, plus a free port
    and a log file (the command's own arguments are passed exactly as written)."""
    words = shlex.split(command)
    script = Path(sys.executable).with_name(words[0])
    argv = ([str(script)] if script.exists() else [sys.executable, "-m", "reactor"])
    return ServeProcess((), cwd=REPO, argv=[*argv, *words[1:], "--no-config", "--port", "0",
                                            "--log", str(tmp_path / "access.log")])


def test_the_native_example_runs_as_the_readme_shows(tmp_path: Path) -> None:
    proc = start_example(readme_commands()[0], tmp_path)
    try:
        port = proc.port
        assert get(port, "/hello/world").body == b"Hello, world!\n"
        user = get(port, "/users/1")
        assert json.loads(user.body) == {"id": 1, "name": "Ada"}
        assert user.headers["server-timing"].startswith("app;dur=")
        assert get(port, "/users/abc").status == 404
        client = Client(port)
        try:
            refused = client.request("POST", "/users", b'{"name": "Grace"}')
            assert refused.status == 401 and "server-timing" in refused.headers
            created = client.request("POST", "/users", b'{"name": "Grace"}',
                                     headers={"X-API-Key": "let-me-in"})
            assert created.status == 201 and created.headers["location"] == "/users/3"
            for body in (b"[1, 2]", b"null", b'{"name": 7}'):  # JSON, but not a user
                wrong = client.request("POST", "/users", body,
                                       headers={"X-API-Key": "let-me-in"})
                assert wrong.status == 400 and b'"name" string' in wrong.body, body
        finally:
            client.close()
        assert get(port, "/users?limit=1").body == b'[{"id":1,"name":"Ada"}]'
        assert get(port, "/users?limit=abc").status == 400
        docs = get(port, "/docs?page=2")  # the README's trailing-slash example
        assert (docs.status, docs.headers["location"]) == (308, "/docs/?page=2")
        assert get(port, "/docs/").body == b"<h1>Docs</h1>\n"
    finally:
        proc.stop()


def test_the_flask_example_runs_as_the_readme_shows(tmp_path: Path) -> None:
    pytest.importorskip("flask")
    proc = start_example(readme_commands()[1], tmp_path)
    try:
        port = proc.port
        assert json.loads(get(port, "/").body) == {"message": "hello from Flask on reactor",
                                                   "scheme": "http"}
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            connection.request("GET", "/count/3")
            response = connection.getresponse()
            assert response.getheader("Transfer-Encoding") == "chunked"
            assert response.read() == b"0\n1\n2\n"
        finally:
            connection.close()
    finally:
        proc.stop()


def test_app_settings_are_checked_where_they_come_from(tmp_path: Path) -> None:
    from reactor.cli import build_parser
    from reactor.ops.config import ConfigError, load_config

    (tmp_path / "src").mkdir()
    args = build_parser().parse_args(["serve", "--no-config", "--app", "pkg.web:make()",
                                      "--app-dir", f"src,{tmp_path}"])
    config = load_config(args, {}, cwd=str(tmp_path))
    assert config.app.native == "pkg.web:make()"
    assert config.app.path == (tmp_path / "src", tmp_path)
    for flag, value, reason in (
            ("--app", "no colon", 'must be "module:app" or "module:factory()"'),
            ("--wsgi", "mod:app(x)", 'must be "module:app" or "module:factory()"'),
            ("--app-dir", "missing-dir", "does not exist")):
        bad = build_parser().parse_args(["serve", "--no-config", flag, value])
        with pytest.raises(ConfigError) as caught:
            load_config(bad, {}, cwd=str(tmp_path))
        assert str(caught.value).startswith(f"command line {flag}: app.")
        assert reason in str(caught.value)


@pytest.mark.parametrize(("source", "expected"), [
    ('@app.get("/x")\ndef a(request): return "a"\n@app.get("/x")\ndef b(request): return "b"\n',
     "RouteError: GET /x is registered twice ({}:7)"),
    ('@app.get("/x/{id:integer}")\ndef a(request, id): return "a"\n',
     "RouteError: bad parameter '{{id:integer}}' in route '/x/{{id:integer}}' (types: str,"
     " bytes, int, float, uuid, path) ({}:5)"),
])
def test_a_bad_route_names_the_line_of_the_app_not_of_reactor(
        tmp_path: Path, source: str, expected: str) -> None:
    """A route the router refuses at import named reactor/app/router.py as the place;
    the line to fix is the app's decorator."""
    module(tmp_path, "routes_x9", "from reactor import App\n\napp = App()\n\n" + source)
    code, lines = run_to_exit(["--app", "routes_x9:app", "--port", "0"], tmp_path)
    assert code == 2
    assert lines == ["reactor: cannot import 'routes_x9:app': "
                     + expected.format(tmp_path / "routes_x9.py")]
