"""The servers under test: how each starts, how the harness knows it is ready.

Each server is ONE process (nginx and gunicorn: a master plus one worker) started
as ``taskset -c 0 ...`` in its own process group, serving ``bench/.work/www`` on a
free port of 127.0.0.1, with its access log written under ``bench/.work/logs``.
"""

from __future__ import annotations

import http.client
import os
import re
import string
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench import APPS_DIR, HOST, ROOT, SERVER_CPU, VENV_DIR, WORK_DIR, procs

LOG_DIR = WORK_DIR / "logs"
NGINX_DIR = WORK_DIR / "nginx"
PEER_BIN = VENV_DIR / "bin"


class ServerError(RuntimeError):
    """A server did not start or did not answer."""


@dataclass(frozen=True)
class Context:
    """What a command line needs to know."""

    port: int
    www: Path
    log: Path


@dataclass(frozen=True)
class ServerSpec:
    """How to run one server."""

    name: str
    description: str
    access_log: str  # how it logs, for the report
    argv: Callable[[Context], list[str]]
    peer: bool = True  # a Python peer from bench/.venv (trimmed in the default run)
    needs_nginx: bool = False
    port_zero: bool = False  # try --port 0 and read the bound port from its output
    only: tuple[str, ...] = ()  # the workloads it runs (all when empty)


def reactor_bin() -> Path:
    """The project's ``reactor`` script (next to the running interpreter if there)."""
    here = Path(sys.executable).parent / "reactor"
    return here if here.exists() else ROOT / ".venv" / "bin" / "reactor"


def _python_app(script: str) -> Callable[[Context], list[str]]:
    def argv(ctx: Context) -> list[str]:
        return [str(PEER_BIN / "python"), str(APPS_DIR / script), "--host", HOST,
                "--port", str(ctx.port), "--directory", str(ctx.www), "--log", str(ctx.log)]

    return argv


def _reactor(ctx: Context, name: str = "reactor", server: str = "") -> list[str]:
    # /files/ from a [static] document root, as nginx serves it: sendfile for the 1 MiB file,
    # the gzip cache for the HTML page (the /files/{name} route of the original challenge
    # answers application/octet-stream, which no server compresses).
    config = ctx.log.parent / f"{name}-bench.toml"
    config.write_text(f'[static]\nroot = "{ctx.www}"\nprefix = "/files"\n'
                      + (f"[server]\n{server}\n" if server else ""))
    return [str(reactor_bin()), "serve", "--config", str(config), "--host", HOST,
            "--port", str(ctx.port), "--log", str(ctx.log)]


BUSY_POLL_US = 100


def _reactor_busy_poll(ctx: Context) -> list[str]:
    return _reactor(ctx, "reactor-busypoll", f"busy_poll_us = {BUSY_POLL_US}")


def _threaded(ctx: Context) -> list[str]:
    return [sys.executable, str(APPS_DIR / "threaded.py"), "--host", HOST,
            "--port", str(ctx.port), "--directory", str(ctx.www), "--log", str(ctx.log)]


def _gunicorn(ctx: Context) -> list[str]:
    return [str(PEER_BIN / "gunicorn"), "--worker-class", "gthread", "--workers", "1",
            "--threads", "8", "--bind", f"{HOST}:{ctx.port}", "--backlog", "4096",
            "--keep-alive", "300", "--access-logfile", str(ctx.log), "--chdir", str(APPS_DIR),
            "--env", f"BENCH_WWW={ctx.www}", "wsgi_app:application"]


def _uvicorn(ctx: Context) -> list[str]:
    return [str(PEER_BIN / "uvicorn"), "asgi_app:app", "--app-dir", str(APPS_DIR),
            "--host", HOST, "--port", str(ctx.port), "--http", "httptools", "--loop", "uvloop",
            "--workers", "1", "--backlog", "4096", "--timeout-keep-alive", "300",
            "--lifespan", "off"]


def _uvicorn_nolog(ctx: Context) -> list[str]:
    return [*_uvicorn(ctx), "--no-access-log"]


def nginx_config(ctx: Context, prefix: Path = NGINX_DIR) -> Path:
    """Fill ``bench/apps/nginx.conf`` into ``<prefix>/nginx.conf`` (``bench/.work/nginx``)."""
    for sub in ("tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    template = string.Template((APPS_DIR / "nginx.conf").read_text())
    text = template.safe_substitute(port=ctx.port, www=ctx.www, prefix=prefix)
    # nginx's own $variables pass through safe_substitute; ours must all be filled.
    assert "${" not in text, "unfilled placeholder in nginx.conf"
    text = text.replace(f"access_log {prefix}/access.log", f"access_log {ctx.log}")
    conf = prefix / "nginx.conf"
    conf.write_text(text)
    return conf


def _nginx(ctx: Context) -> list[str]:
    conf = nginx_config(ctx)
    return ["nginx", "-p", str(NGINX_DIR), "-e", str(NGINX_DIR / "error.log"), "-c", str(conf)]


SERVERS: tuple[ServerSpec, ...] = (
    ServerSpec("reactor", "reactor (this project), `reactor serve`", "JSON lines to a file",
               _reactor, peer=False, port_zero=True),
    ServerSpec("reactor-busypoll",
               f"reactor with the opt-in `server.busy_poll_us = {BUSY_POLL_US}`",
               "JSON lines to a file", _reactor_busy_poll, peer=False, port_zero=True,
               only=("echo1", "echo50")),
    ServerSpec("threaded", "bench/apps/threaded.py: raw sockets, one thread per connection",
               "JSON lines to a file", _threaded, peer=False),
    ServerSpec("nginx", "nginx, 1 worker, sendfile, gzip level 6 for HTML",
               "combined format to a file", _nginx, peer=False, needs_nginx=True),
    ServerSpec("uvicorn", "uvicorn + httptools + uvloop, 1 worker, raw ASGI app",
               "uvicorn.access to stdout, redirected to a file", _uvicorn),
    ServerSpec("uvicorn-nolog", "uvicorn + httptools + uvloop, 1 worker, raw ASGI app,"
               " `--no-access-log`", "none (`--no-access-log`)", _uvicorn_nolog),
    ServerSpec("aiohttp", "aiohttp.web on asyncio, FileResponse (sendfile) for files",
               "AccessLogger to a file", _python_app("aiohttp_app.py")),
    ServerSpec("gunicorn", "gunicorn gthread, 1 worker x 8 threads, WSGI app",
               "--access-logfile", _gunicorn),
    ServerSpec("waitress", "waitress, defaults (4 threads, connection_limit 100), WSGI app",
               "JSON-lines middleware to a file", _python_app("waitress_app.py")),
    ServerSpec("tornado", "tornado.web on asyncio", "tornado.access to a file",
               _python_app("tornado_app.py")),
    ServerSpec("twisted", "twisted.web Resource, epoll reactor", "Site(logPath=...) to a file",
               _python_app("twisted_app.py")),
)

BY_NAME = {s.name: s for s in SERVERS}


@dataclass
class Running:
    """A started server."""

    spec: ServerSpec
    proc: subprocess.Popen
    port: int
    log: Path
    output: Path
    notes: list[str] = field(default_factory=list)

    @property
    def pgid(self) -> int:
        return self.proc.pid

    def rss_kib(self) -> int:
        return procs.group_rss_kib(self.pgid)

    def cpu_s(self) -> float:
        return procs.group_cpu_s(self.pgid)

    def stop(self) -> None:
        procs.stop(self.proc)


def http_get(port: int, path: str, headers: dict[str, str] | None = None,
             timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """One GET on a fresh connection: (status, lower-cased headers, raw body)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


def wait_ready(port: int, proc: subprocess.Popen, timeout: float) -> None:
    """Poll ``GET /echo/abc`` until it answers, the process dies, or time runs out."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"exited with code {proc.returncode} before answering")
        try:
            status, _, _ = http_get(port, "/echo/abc", timeout=1.0)
            if status < 500:
                return
            last = f"status {status}"
        except (OSError, http.client.HTTPException) as exc:
            last = str(exc)
        time.sleep(0.1)
    raise ServerError(f"not ready after {timeout:.0f} s ({last})")


PORT_PATTERNS = (
    re.compile(r"(?:127\.0\.0\.1|localhost|0\.0\.0\.0|\[::1?\]):(\d{1,5})\b"),
    re.compile(r"\bport\b[\"']?\s*[:=]\s*[\"']?(\d{1,5})\b", re.IGNORECASE),
)


def find_bound_port(text: str) -> int | None:
    """The first non-zero port in a server's "listening on ..." output, if any."""
    for pattern in PORT_PATTERNS:
        for match in pattern.finditer(text):
            port = int(match.group(1))
            if 0 < port < 65536:
                return port
    return None


def _read(paths: list[Path]) -> str:
    return "\n".join(p.read_text(errors="replace") for p in paths if p.exists())


def wait_bound_port(proc: subprocess.Popen, files: list[Path], timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        port = find_bound_port(_read(files))
        if port is not None or proc.poll() is not None:
            return port
        time.sleep(0.1)
    return None


def _launch(spec: ServerSpec, ctx: Context, output: Path) -> subprocess.Popen:
    output.parent.mkdir(parents=True, exist_ok=True)
    ctx.log.unlink(missing_ok=True)
    argv = ["taskset", "-c", SERVER_CPU, *spec.argv(ctx)]
    env = dict(os.environ, BENCH_WWW=str(ctx.www), PYTHONUNBUFFERED="1")
    with output.open("wb") as out:
        return procs.spawn(argv, stdout=out, stderr=subprocess.STDOUT, env=env)


def start(spec: ServerSpec, www: Path, timeout: float = 20.0) -> Running:
    """Start ``spec`` and return once it answers ``GET /echo/abc``."""
    log = LOG_DIR / f"{spec.name}.access.log"
    output = LOG_DIR / f"{spec.name}.out"
    notes: list[str] = []
    if spec.port_zero:
        proc = _launch(spec, Context(0, www, log), output)
        port = wait_bound_port(proc, [output, log], timeout=10.0)
        if port is not None:
            notes.append(f"`--port 0` works: bound port {port} read from its output")
            try:
                wait_ready(port, proc, timeout)
                return Running(spec, proc, port, log, output, notes)
            except ServerError as exc:
                notes.append(f"port {port} from its output did not answer: {exc}")
        else:
            tail = _read([output])[-300:].strip()
            notes.append("`--port 0`: no bound address found in its output"
                         + (f" (output: {tail!r})" if tail else ""))
        procs.stop(proc)
    port = procs.free_port()
    proc = _launch(spec, Context(port, www, log), output)
    try:
        wait_ready(port, proc, timeout)
    except ServerError as exc:
        procs.stop(proc)
        tail = _read([output])[-800:].strip()
        raise ServerError(f"{exc}; output: {tail!r}" if tail else str(exc)) from None
    return Running(spec, proc, port, log, output, notes)
