"""A real Flask app hosted by `[app] wsgi`, checked over real sockets."""

from __future__ import annotations

import hashlib
import http.client
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RunningServer, fetch, read_log, start_server, wait_for_log

pytest.importorskip("flask")


@pytest.fixture
def flask_server(tmp_path: Path) -> Iterator[RunningServer]:
    running = start_server(tmp_path, app={"wsgi": "tests.app.flaskapp:app"})
    yield running
    running.stop()


def test_json_routes(flask_server: RunningServer) -> None:
    status, headers, body = fetch(flask_server, "GET", "/api/items/7?q=a&q=b")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"id": 7, "q": ["a", "b"], "scheme": "http",
                                "remote": "127.0.0.1",
                                "host": f"{flask_server.host}:{flask_server.port}"}
    payload = json.dumps({"hello": ["wörld", 1]}).encode()
    status, _, body = fetch(flask_server, "POST", "/api/echo", payload,
                            {"Content-Type": "application/json"})
    assert json.loads(body) == {"got": {"hello": ["wörld", 1]}, "length": len(payload)}
    assert fetch(flask_server, "GET", "/api/items/x")[0] == 404


def test_form_post_and_file_upload(flask_server: RunningServer) -> None:
    status, _, body = fetch(flask_server, "POST", "/form", b"name=Ada&lang=py&lang=c",
                            {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200
    assert json.loads(body) == {"name": "Ada", "langs": ["py", "c"]}
    data = bytes(range(256)) * 8192  # 2 MiB: spooled to disk before Flask reads it
    boundary = uuid.uuid4().hex
    body_bytes = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\n"
                  f"quarterly\r\n--{boundary}\r\nContent-Disposition: form-data;"
                  f" name=\"document\"; filename=\"q3.bin\"\r\n"
                  f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + (
                      f"\r\n--{boundary}--\r\n".encode())
    connection = http.client.HTTPConnection(flask_server.host, flask_server.port, timeout=10)
    try:  # sent chunked: Flask still sees the length (CONTENT_LENGTH is set)
        pieces = [body_bytes[i:i + 65536] for i in range(0, len(body_bytes), 65536)]
        connection.request("POST", "/upload", body=iter(pieces), encode_chunked=True,
                           headers={"Content-Type": f"multipart/form-data; boundary={boundary}",
                                    "Transfer-Encoding": "chunked"})
        response = connection.getresponse()
        assert response.status == 200
        assert json.loads(response.read()) == {
            "filename": "q3.bin", "size": len(data),
            "sha": hashlib.sha256(data).hexdigest(), "note": "quarterly"}
    finally:
        connection.close()


def test_streaming(flask_server: RunningServer) -> None:
    status, headers, body = fetch(flask_server, "GET", "/stream/5")
    assert status == 200 and headers.get("Transfer-Encoding") == "chunked"
    assert body == b"".join(b"line %d\n" % i for i in range(5))


@pytest.mark.expect_log("wsgi-errors")
def test_error_route_logs_one_traceback_and_keeps_the_connection(
        flask_server: RunningServer) -> None:
    connection = http.client.HTTPConnection(flask_server.host, flask_server.port, timeout=5)
    try:
        connection.request("GET", "/error")
        response = connection.getresponse()
        assert response.status == 500
        assert b"flask route exploded" not in response.read()
        connection.request("GET", "/api/items/1")  # the same connection still works
        assert connection.getresponse().status == 200
    finally:
        connection.close()
    lines = wait_for_log(flask_server.error_log, lambda x: x["event"] == "wsgi-errors")
    assert "Traceback" in lines[0]["message"]
    assert "flask route exploded" in lines[0]["message"]
    flask_server.stop()
    failures = [x for x in read_log(flask_server.error_log) if x["level"] == "error"]
    assert len(failures) == 1  # Flask logged it through wsgi.errors; nothing else did
