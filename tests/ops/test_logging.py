"""The access-log renderer and sinks: valid JSON lines, typed fields, buffering, reopen."""

from __future__ import annotations

import json
import os
from pathlib import Path

from reactor.ops.logging import LineSink, ServerLog, _render_access

REQUEST = {
    "request_id": 'ab"c-1', "conn_id": 1, "request_no": 2, "remote_addr": "127.0.0.1",
    "remote_port": 44898, "method": "GET", "path": "/echo/h\u00e9\n\x00", "query": "a=1",
    "http_version": "1.1", "status": 200, "bytes_in": 0, "bytes_out": 175,
    "duration_ms": 2.655, "queue_ms": None, "user_agent": "curl/8", "referer": None,
    "content_encoding": None, "keepalive_reuse": True,
}


def render(fields: dict, event: str = "request") -> dict:
    line = _render_access(None, "info", dict(fields, event=event))
    assert "\n" not in line
    return json.loads(line)


def test_request_line_round_trips_every_field_with_its_type() -> None:
    record = render(REQUEST)
    assert {key: record[key] for key in REQUEST} == REQUEST
    assert list(record)[:4] == ["ts", "level", "event", "schema"]
    assert record["schema"] == 1 and record["event"] == "request"
    assert record["ts"].endswith("Z") and "T" in record["ts"]


def test_optional_fields_render_as_values_or_null() -> None:
    record = render(dict(REQUEST, queue_ms=1.25, user_agent=None, content_encoding="gzip"))
    assert record["queue_ms"] == 1.25
    assert record["user_agent"] is None
    assert record["content_encoding"] == "gzip"


def test_other_events_and_unexpected_fields_use_the_generic_renderer() -> None:
    assert render({"status": 400, "reason": "obs-fold"}, "rejected")["reason"] == "obs-fold"
    odd = render(dict(REQUEST, status="200"))  # a str where an int is expected
    assert odd["status"] == "200"


def test_sink_buffers_until_flush_and_reopens_after_rotation(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    sink = LineSink(str(path))
    sink.msg("one")
    assert path.read_text() == ""  # buffered: no syscall per line
    sink.flush()
    assert path.read_text() == "one\n"
    os.rename(path, tmp_path / "access.log.1")
    sink.msg("two")
    sink.reopen()  # flushes to the old file first, then opens the path anew
    sink.msg("three")
    sink.close()
    assert (tmp_path / "access.log.1").read_text() == "one\ntwo\n"
    assert path.read_text() == "three\n"


def test_server_log_writes_requests_and_errors_to_their_files(tmp_path: Path) -> None:
    log = ServerLog(access=str(tmp_path / "a.log"), error=str(tmp_path / "e.log"))
    log.request(dict(REQUEST))
    try:
        raise ValueError("boom")
    except ValueError as exc:
        log.error("handler-error", exc, {"request_id": "x"})
    log.close()
    access = [json.loads(line) for line in (tmp_path / "a.log").read_text().splitlines()]
    assert [a["event"] for a in access] == ["request"]
    error = json.loads((tmp_path / "e.log").read_text())
    assert error["event"] == "handler-error" and error["level"] == "error"
    assert "ValueError: boom" in error["exception"] and error["request_id"] == "x"
