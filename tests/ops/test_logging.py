"""The access-log renderer and sinks: valid JSON lines, typed fields, buffering, reopen."""

from __future__ import annotations

import calendar
import json
import os
import re
import time
from pathlib import Path

import pytest

from reactor.app.types import Headers, Request, Response
from reactor.conn.shared import AccessRecord
from reactor.ops.logging import LineSink, ServerLog, _render_access, record_fields

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


def access_record(**changes) -> AccessRecord:  # type: ignore[no-untyped-def]
    """An AccessRecord carrying REQUEST's values (with `changes`)."""
    values = dict(REQUEST, **changes)
    headers = [(b"user-agent", values["user_agent"].encode())] if values["user_agent"] else []
    request = Request(values["method"], values["path"], values["query"],
                      values["http_version"], Headers(headers),
                      remote_addr=values["remote_addr"], remote_port=values["remote_port"],
                      request_no=values["request_no"], request_id=values["request_id"])
    response_headers = ([(b"Content-Encoding", values["content_encoding"].encode())]
                        if values["content_encoding"] else [])
    record = AccessRecord(request, Response(values["status"], response_headers),
                          values["conn_id"], values["bytes_out"], values["bytes_in"],
                          values["queue_ms"])
    record.duration_ms = values["duration_ms"]
    return record


def test_request_line_round_trips_every_field_with_its_type() -> None:
    record = render({"record": access_record()})
    assert {key: record[key] for key in REQUEST} == REQUEST
    assert list(record)[:4] == ["ts", "level", "event", "schema"]
    assert record["schema"] == 1 and record["event"] == "request"
    assert record["ts"].endswith("Z") and "T" in record["ts"]


def test_fast_line_equals_the_generic_rendering_of_the_same_record() -> None:
    record = access_record(queue_ms=1.25, content_encoding="gzip")
    fast = render({"record": record})
    generic = render(record_fields(record))  # the dict path other renderers use
    fast.pop("ts")
    generic.pop("ts")
    assert fast == generic


def test_header_values_are_logged_as_utf8_and_other_bytes_as_escapes() -> None:
    record = access_record(user_agent="caf\u00e9/1.0 \u65e5\u672c")  # sent as UTF-8
    record.request.headers._fields.append((b"referer", b"http://x/caf\xe9"))  # latin-1 page
    for line in (render({"record": record}), render(record_fields(record))):
        assert line["user_agent"] == "caf\u00e9/1.0 \u65e5\u672c"  # not "cafÃ©"
        assert line["referer"] == "http://x/caf\\xe9"


def test_optional_fields_render_as_values_or_null() -> None:
    record = render({"record": access_record(queue_ms=1.25, user_agent=None,
                                             content_encoding="gzip")})
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
    log.request(access_record())
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


def test_error_log_on_a_terminal_is_rendered_for_a_person(tmp_path: Path) -> None:
    master, slave = os.openpty()
    try:
        log = ServerLog(access=str(tmp_path / "a.log"), error=os.ttyname(slave))
        log.warning("files-disabled", message="no files directory")
        log.close()
        shown = os.read(master, 4096).decode("utf-8", "replace")
    finally:
        os.close(master)
        os.close(slave)
    assert "files-disabled" in shown and "no files directory" in shown
    assert not shown.lstrip().startswith("{")  # the console renderer, not a JSON line


def test_server_log_request_line_equals_the_structlog_rendering(tmp_path: Path) -> None:
    """ServerLog appends the JSON request line itself; it is the processor chain's line."""
    record = access_record(queue_ms=0.5, content_encoding="gzip", user_agent='a "b" \\ c')
    record.request.headers._fields.append((b"referer", b"http://x/\xe9"))
    record.request.client_addr = "203.0.113.9"
    log = ServerLog(access=str(tmp_path / "a.log"), error=str(tmp_path / "e.log"))
    log.request(record)
    log.close()
    direct = json.loads((tmp_path / "a.log").read_text())
    chained = render({"record": record})
    assert list(direct) == list(chained)
    direct.pop("ts")
    chained.pop("ts")
    assert direct == chained
    assert direct["client_addr"] == "203.0.113.9" and direct["peer_addr"] == "127.0.0.1"
    assert direct["referer"] == "http://x/\\xe9" and direct["user_agent"] == 'a "b" \\ c'


def test_timestamps_are_utc_milliseconds_and_follow_the_clock() -> None:
    from reactor.ops.logging import _Clock

    clock = _Clock()
    assert clock.advance(1_700_000_000_123) == "2023-11-14T22:13:20.123Z"
    assert clock.advance(1_700_000_000_999) == "2023-11-14T22:13:20.999Z"
    assert clock.advance(1_700_000_001_005) == "2023-11-14T22:13:21.005Z"  # next second
    before = time.time()
    now = clock.now()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", now)
    stamped = calendar.timegm(time.strptime(now[:19], "%Y-%m-%dT%H:%M:%S")) + int(now[20:23]) / 1e3
    assert before - 0.002 <= stamped <= time.time()


def _fill(directory: Path) -> None:
    with (directory / "filler").open("wb", buffering=0) as filler:
        for size in (65536, 4096, 1):  # to the last byte
            try:
                while True:
                    filler.write(b"f" * size)
            except OSError:
                pass


def test_a_full_disk_tears_one_line_at_most_and_says_how_many_were_lost(
        tmpfs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A full disk takes part of a write and refuses the rest: the file ended inside a line,
    and once space came back the next line was appended to that fragment (two lines lost to
    a log shipper's parser, one of them written after the disk recovered), and nothing said
    how many lines were dropped meanwhile. The fragment is ended first now; the lines after
    it parse, and stderr says when writes resume and how many lines were lost."""
    path = tmpfs / "access.log"
    sink = LineSink(str(path))
    sink.msg(json.dumps({"n": 0}))
    sink.flush()  # the file has its first page: its slack takes lines until it is full
    _fill(tmpfs)
    for n in range(1, 40):  # ~8 KiB: more than a page's slack
        sink.msg(json.dumps({"n": n, "pad": "x" * 200}))
        sink.flush()
    (tmpfs / "filler").unlink()
    for n in range(40, 45):
        sink.msg(json.dumps({"n": n}))
        sink.flush()
    sink.close()
    numbers, broken = [], []
    for line in path.read_bytes().split(b"\n")[:-1]:
        try:
            numbers.append(json.loads(line)["n"])
        except ValueError:
            broken.append(line)
    assert len(broken) == 1 and broken[0].startswith(b'{"n": '), broken  # the fragment
    assert numbers[-5:] == [40, 41, 42, 43, 44]
    assert numbers == [*range(len(numbers) - 5), 40, 41, 42, 43, 44]
    lost = 39 - (len(numbers) - 6)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2, err
    assert err[0].startswith(f"reactor: cannot write log {path}: [Errno 28]")
    assert err[1] == f"reactor: writing log {path} again; {lost} lines were lost"


def test_a_line_torn_before_a_rotation_leaves_no_empty_line_in_the_new_file(
        tmpfs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The fragment a full disk left ends the rotated file; the file opened anew after the
    rotation starts with the next whole line, not with the newline that ends the fragment
    (an empty first line, which a JSON-lines shipper reports as a parse error)."""
    path = tmpfs / "access.log"
    sink = LineSink(str(path))
    sink.msg(json.dumps({"n": 0}))
    sink.flush()
    _fill(tmpfs)
    for n in range(1, 40):
        sink.msg(json.dumps({"n": n, "pad": "x" * 200}))
        sink.flush()
    assert not path.read_bytes().endswith(b"\n")  # torn
    (tmpfs / "filler").unlink()
    path.rename(tmpfs / "access.log.1")  # logrotate, then SIGUSR1
    sink.reopen()
    sink.msg(json.dumps({"n": 40}))
    sink.close()
    assert path.read_bytes() == b'{"n": 40}\n'
    capsys.readouterr()
