"""Logging: structlog set up for one JSON access line per request, plus an error log.

Strategy: a short processor chain (one processor that stamps time, level and a stable key
order, then the renderer) feeding a sink that buffers lines and writes them in one syscall
when the loop is about to wait, when the buffer fills, and at shutdown. Nothing is lost on a
graceful stop; a crash loses at most one loop pass of lines. `SIGUSR1` reopens file sinks.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from json.encoder import encode_basestring as _json_str  # the C-accelerated string escaper
from typing import Any

import structlog

from reactor.app.health import HealthResponse
from reactor.conn.shared import AccessRecord

ACCESS_SCHEMA_VERSION = 1
LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
_FLUSH_LINES = 512  # a full buffer is written at once even without an idle moment


def open_error(exc: OSError) -> str:
    """The one-line reason a log file did not open, naming it (and a missing directory)."""
    path = str(exc.filename)
    directory = os.path.dirname(os.path.abspath(path))
    if isinstance(exc, FileNotFoundError) and not os.path.isdir(directory):
        return f"cannot open log file {path}: directory {directory} does not exist"
    return f"cannot open log file {path}: {exc.strerror}"


def probe_target(target: str) -> str | None:
    """Open a log file target for appending as the server would, as `nginx -t` does; None if
    it opens (a file created by the probe is removed again), else the one-line reason."""
    if target in ("-", "stderr", "off"):
        return None
    existed = os.path.exists(target)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    except OSError as exc:
        return open_error(exc)
    os.close(fd)
    if not existed:
        try:
            os.unlink(target)
        except OSError:
            pass
    return None


class LineSink:
    """A log destination: a file path (appended), `-` (stdout), `stderr`, or `off`."""

    __slots__ = ("_fd", "_lines", "_lost", "_owns_fd", "_torn", "_write_failed", "target")

    def __init__(self, target: str) -> None:
        self.target = target
        self._lines: list[str] = []
        self._fd = -1
        self._owns_fd = False
        self._write_failed = False
        self._torn = False  # a failed write left part of a line at the end of the file
        self._lost = 0  # lines not written since writes began to fail
        self._open()

    @property
    def enabled(self) -> bool:
        return self.target != "off"

    @property
    def fileno(self) -> int:
        return self._fd

    @property
    def owned_file(self) -> int:
        """The descriptor of the log file this sink opened itself, else -1 (a stream, off)."""
        return self._fd if self._owns_fd else -1

    def isatty(self) -> bool:
        return self._fd >= 0 and os.isatty(self._fd)

    def _open(self) -> None:
        target = self.target
        if target == "off":
            self._fd, self._owns_fd = -1, False
        elif target == "-":
            self._fd, self._owns_fd = sys.stdout.fileno(), False
        elif target == "stderr":
            self._fd, self._owns_fd = sys.stderr.fileno(), False
        else:  # a missing directory is an error, not something to create (a typo would be)
            self._fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                               0o640)
            self._owns_fd = True

    def reopen(self) -> None:
        """After logrotate moved the file: flush to the old one, then open the path anew."""
        self.flush()
        if self._owns_fd:
            old = self._fd
            self._open()
            if self._torn:  # the fragment ends the rotated file, not a new (or emptied) one
                now = os.fstat(self._fd)
                self._torn = now.st_size > 0 and os.path.samestat(os.fstat(old), now)
            os.close(old)

    # structlog calls the logger method named after the level; all of them append a line.
    def msg(self, message: str) -> None:
        self._lines.append(message)
        if len(self._lines) >= _FLUSH_LINES:
            self.flush()

    debug = info = warning = warn = error = critical = exception = msg

    def flush(self) -> None:
        if not self._lines:
            return
        lines, self._lines = self._lines, []
        if self._fd < 0:
            return
        lines.append("")
        data = "\n".join(lines).encode("utf-8", "replace")
        if self._torn:  # end that fragment first: the lines after it stay whole, parseable
            data = b"\n" + data
        view, sent = memoryview(data), 0
        try:
            while sent < len(data):
                sent += os.write(self._fd, view[sent:])
        except OSError as exc:
            # A full disk takes part of a write, then refuses the rest: what went out may
            # end inside a line.
            if sent:
                self._torn = data[sent - 1] != 0x0A
            unwritten = data.count(b"\n", sent) - (1 if self._torn and not sent else 0)
            self._lost += max(0, unwritten)
            if not self._write_failed:  # say it once, not once per line
                self._write_failed = True
                print(f"reactor: cannot write log {self.target}: {exc}", file=sys.stderr)
            return
        self._torn = False
        if self._write_failed:
            self._write_failed = False
            print(f"reactor: writing log {self.target} again; {self._lost} lines were lost",
                  file=sys.stderr)
            self._lost = 0

    def close(self) -> None:
        self.flush()
        if self._owns_fd:
            os.close(self._fd)
            self._fd = -1


class _Clock:
    """ISO-8601 UTC timestamps with milliseconds, cached per millisecond (at load, dozens of
    lines share one), the date-time part per second."""

    __slots__ = ("_milli", "_prefix", "_second", "_stamp")

    def __init__(self) -> None:
        self._second = -1
        self._milli = -1
        self._prefix = ""
        self._stamp = ""

    def now(self) -> str:
        milli = int(time.time() * 1000)
        return self._stamp if milli == self._milli else self.advance(milli)

    def advance(self, milli: int) -> str:
        self._milli = milli
        second = milli // 1000
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        self._stamp = f"{self._prefix}.{milli % 1000:03d}Z"
        return self._stamp


_clock = _Clock()


def _stamp_access(_logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """`ts, level, event, schema` first, then the event's own fields in their order."""
    event = event_dict.pop("event")
    return {"ts": _clock.now(), "level": method, "event": event,
            "schema": ACCESS_SCHEMA_VERSION, **event_dict}


def _stamp(_logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    event = event_dict.pop("event")
    return {"ts": _clock.now(), "level": method, "event": event, **event_dict}


def _exc_to_text(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    exc = event_dict.pop("exc_info", None)
    if isinstance(exc, BaseException):
        event_dict["exception"] = "".join(traceback.format_exception(exc)).rstrip()
    return event_dict


_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)


def _json_dumps(obj: Any, **_kw: Any) -> str:
    return _JSON.encode(obj)


# The canonical request line, schema v1, is one f-string in `_render_request`, straight from
# the AccessRecord: several times cheaper than building a dict and json.dumps-ing it, and it
# is the one line written per request. Any other event takes the generic path
# (`record_fields` + JSON). `tests/ops/test_logging.py` holds the two to the same fields.
_TLS_FIELDS = ',"tls_version":%s,"tls_cipher":%s,"sni":%s'
_TLS_KEYS = ("tls_version", "tls_cipher", "sni")
_SCHEMES = {"http": '"http"', "https": '"https"'}
_SCHEMA = ACCESS_SCHEMA_VERSION
_EMPTY = '""'
_L1 = "latin-1"
# Header values in the log (User-Agent, Referer) as the UTF-8 clients send, a byte that is not
# UTF-8 as \xHH (nginx's log escaping): "café", not the latin-1 reading "cafÃ©".
_U8, _BSR = "utf-8", "backslashreplace"


def _header_str(value: bytes | None) -> str | None:
    return None if value is None else value.decode(_U8, _BSR)


def _json_opt(value: object) -> str:
    return "null" if value is None else _json_str(str(value))


def _tls_suffix(info: dict[str, Any]) -> str:
    """The TLS fields of an HTTPS request line (the connection's facts), or ""."""
    if "tls_version" not in info:
        return ""
    text = _TLS_FIELDS % (_json_opt(info["tls_version"]), _json_opt(info.get("tls_cipher")),
                          _json_opt(info.get("sni")))
    subject = info.get("tls_client_subject")
    if subject is not None:
        text += ',"tls_client_subject":' + _json_str(subject)
    return text


def record_fields(record: AccessRecord) -> dict[str, Any]:
    """The schema-v1 fields of a request line, as a dict (console output, tests)."""
    request, response = record.request, record.response
    headers = request.headers
    queue_ms = record.queue_ms
    info = request.conn_info
    tls = {key: info.get(key) for key in _TLS_KEYS} if "tls_version" in info else {}
    if "tls_client_subject" in info:
        tls["tls_client_subject"] = info["tls_client_subject"]
    return {
        "request_id": request.request_id, "conn_id": record.conn_id,
        "request_no": request.request_no, "remote_addr": request.remote_addr,
        "remote_port": request.remote_port, "client_addr": request.client_addr,
        "peer_addr": request.remote_addr, "method": request.method, "path": request.path,
        "query": request.query, "http_version": request.version, "status": response.status,
        "bytes_in": record.bytes_in, "bytes_out": record.bytes_out,
        "duration_ms": round(record.duration_ms, 3),
        "queue_ms": None if queue_ms is None else round(queue_ms, 3),
        "user_agent": _header_str(headers.get(b"user-agent")),
        "referer": _header_str(headers.get(b"referer")),
        "content_encoding": _header_str(response.header(b"content-encoding")),
        "keepalive_reuse": request.request_no > 1,
        "scheme": request.scheme,
        **tls,
    }


def _render_request(record: AccessRecord) -> str:
    request = record.request
    # One pass over the request's fields (lower-case names) and the response's for the
    # three header values the line carries; the first occurrence counts, as Headers.get.
    user_agent = referer = encoding = None
    for name, value in request.headers._fields:
        if name == b"user-agent":
            if user_agent is None:
                user_agent = value
        elif name == b"referer" and referer is None:
            referer = value
    for name, value in record.response.headers:
        if len(name) == 16 and name.lower() == b"content-encoding":
            encoding = value
            break
    queue_ms = record.queue_ms
    remote = _json_str(request.remote_addr)
    client = request.client_addr
    query = request.query
    request_no = request.request_no
    info = request.conn_info
    milli = int(time.time() * 1000)  # _clock.now() inlined
    stamp = _clock._stamp if milli == _clock._milli else _clock.advance(milli)
    # Values from the client (path, query, header values, an X-Request-ID) can need JSON
    # escaping; the C escaper does it. Numbers are formatted here.
    return (
        f'{{"ts":"{stamp}","level":"info","event":"request","schema":{_SCHEMA},'
        f'"request_id":{_json_str(request.request_id)},"conn_id":{record.conn_id},'
        f'"request_no":{request_no},"remote_addr":{remote},'
        f'"remote_port":{request.remote_port},'
        f'"client_addr":{remote if client is request.remote_addr else _json_str(client)},'
        f'"peer_addr":{remote},"method":{_json_str(request.method)},'
        f'"path":{_json_str(request.path)},"query":{_json_str(query) if query else _EMPTY},'
        f'"http_version":{_json_str(request.version)},"status":{record.response.status},'
        f'"bytes_in":{record.bytes_in},"bytes_out":{record.bytes_out},'
        f'"duration_ms":{record.duration_ms:.3f},'
        f'"queue_ms":{"null" if queue_ms is None else f"{queue_ms:.3f}"},'
        f'"user_agent":{"null" if user_agent is None else _json_str(user_agent.decode(_U8, _BSR))},'
        f'"referer":{"null" if referer is None else _json_str(referer.decode(_U8, _BSR))},'
        f'"content_encoding":{"null" if encoding is None else _json_str(encoding.decode(_L1))},'
        f'"keepalive_reuse":{"true" if request_no > 1 else "false"},'
        f'"scheme":{_SCHEMES.get(request.scheme) or _json_str(request.scheme)}'
        f'{_tls_suffix(info) if "tls_version" in info else ""}}}'
    )


def _expand_record(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """For renderers other than the fast one: the record becomes the schema's fields."""
    record = event_dict.pop("record", None)
    if record is not None:
        event_dict.update(record_fields(record))
    return event_dict


def _render_access(logger: Any, method: str, event_dict: dict[str, Any]) -> str:
    """The access log's whole processor chain: stamp and render in one step."""
    record = event_dict.get("record")
    if record is not None and len(event_dict) == 2:
        return _render_request(record)
    return _JSON.encode(_stamp_access(logger, method, _expand_record(logger, method,
                                                                      event_dict)))


def _renderer(sink: LineSink, fmt: str) -> Any:
    if fmt == "console":
        return structlog.dev.ConsoleRenderer(colors=sink.isatty())
    return structlog.processors.JSONRenderer(serializer=_json_dumps)


def make_logger(sink: LineSink, *, level: str = "info", fmt: str = "json",
                access: bool = False) -> Any:
    """A structlog bound logger writing to `sink`, filtering below `level`."""
    if access and fmt == "json":
        processors: list[Any] = [_render_access]
    else:
        processors = [_exc_to_text, _expand_record, _stamp_access if access else _stamp,
                      _renderer(sink, fmt)]
    # bind() resolves structlog's lazy proxy now, so each call is a plain method call.
    return structlog.wrap_logger(
        sink,
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        cache_logger_on_first_use=True,
    ).bind()


class ServerLog:
    """The connection layer's log sink (`RequestLog`): access lines and errors."""

    def __init__(self, *, access: str = "-", error: str = "stderr", level: str = "info",
                 fmt: str = "json") -> None:
        self.access_sink = LineSink(access)
        self.error_sink = LineSink(error)
        # A person at a terminal gets the readable renderer on the error log.
        error_fmt = "console" if fmt == "console" or self.error_sink.isatty() else "json"
        self.access = make_logger(self.access_sink, level="info", fmt=fmt, access=True)
        self.errors = make_logger(self.error_sink, level=level, fmt=error_fmt)
        self._access_on = self.access_sink.enabled
        # JSON access lines are rendered straight from the record (the processor chain
        # would only call `_render_access`); console output goes through structlog.
        self._fast_access = fmt == "json"
        # Who else sees each finished request (ops/metrics), and whether health checks
        # (HealthResponse) are written: off by default, a check a second drowns the log.
        self.observer: Any = None
        # Who else sees each `rejected` event (ops/metrics: refusals answered with a status)
        self.rejected_observer: Any = None
        self.log_health = False

    def request(self, record: AccessRecord) -> None:
        observer = self.observer
        if observer is not None:
            observer(record)
        if self._access_on and (self.log_health
                                or type(record.response) is not HealthResponse):
            if self._fast_access:  # the request line needs no processor chain: append it
                lines = self.access_sink._lines
                lines.append(_render_request(record))
                if len(lines) >= _FLUSH_LINES:
                    self.access_sink.flush()
            else:
                self.access.info("request", record=record)

    def rejected(self, fields: dict[str, Any]) -> None:
        observer = self.rejected_observer
        if observer is not None:  # before event_kind is popped: it tells the kinds apart
            observer(fields)
        if self._access_on:
            event = fields.pop("event_kind", "rejected")
            self.access.info(event, **fields)

    def error(self, event: str, exc: BaseException | None, fields: dict[str, Any]) -> None:
        self.errors.error(event, exc_info=exc, **fields)
        self.error_sink.flush()

    def info(self, event: str, **fields: Any) -> None:
        self.errors.info(event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self.errors.warning(event, **fields)

    @property
    def pending(self) -> bool:
        """Lines are buffered, waiting for `flush()`."""
        return bool(self.access_sink._lines or self.error_sink._lines)

    def flush(self) -> None:
        self.access_sink.flush()
        self.error_sink.flush()

    def reopen(self) -> None:
        self.access_sink.reopen()
        self.error_sink.reopen()

    def close(self) -> None:
        self.access_sink.close()
        self.error_sink.close()
