"""Response serialization: status lines, header blocks, response splitting, chunk framing."""

from __future__ import annotations

import pytest

from reactor.proto import (
    CONTINUE_100,
    LAST_CHUNK,
    LocalProtocolError,
    encode_chunk,
    header_lines,
    reason_phrase,
    response_head,
)
from reactor.proto.http1 import response_head as http1_response_head


def test_status_line_and_headers_in_order() -> None:
    head = response_head(
        200, [(b"Content-Type", b"text/plain"), (b"Content-Length", b"5"), (b"X-A", b"")]
    )
    assert head == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nX-A: \r\n\r\n"
    )


def test_no_headers() -> None:
    assert response_head(204, []) == b"HTTP/1.1 204 No Content\r\n\r\n"


def test_serializers_are_reachable_from_http1() -> None:
    assert http1_response_head is response_head


@pytest.mark.parametrize(
    ("status", "line"),
    [
        (100, b"HTTP/1.1 100 Continue\r\n"),
        (101, b"HTTP/1.1 101 Switching Protocols\r\n"),
        (301, b"HTTP/1.1 301 Moved Permanently\r\n"),
        (404, b"HTTP/1.1 404 Not Found\r\n"),
        (413, b"HTTP/1.1 413 Content Too Large\r\n"),
        (414, b"HTTP/1.1 414 URI Too Long\r\n"),
        (431, b"HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        (500, b"HTTP/1.1 500 Internal Server Error\r\n"),
        (501, b"HTTP/1.1 501 Not Implemented\r\n"),
        (505, b"HTTP/1.1 505 HTTP Version Not Supported\r\n"),
        (299, b"HTTP/1.1 299 \r\n"),  # RFC 9112 4: the SP stays even without a reason
    ],
)
def test_status_lines(status: int, line: bytes) -> None:
    assert response_head(status, []) == line + b"\r\n"


def test_every_rfc9110_status_has_a_reason() -> None:
    codes = [100, 101, *range(200, 207), *range(300, 306), 307, 308]
    codes += [*range(400, 418), 421, 422, 426, *range(500, 506), 507]  # 507: RFC 4918
    for code in codes:
        assert reason_phrase(code), code


def test_reason_phrase() -> None:
    assert reason_phrase(200) == b"OK"
    assert reason_phrase(418) == b""
    assert reason_phrase(799) == b""


def test_custom_reason() -> None:
    assert response_head(200, [], reason=b"Fine") == b"HTTP/1.1 200 Fine\r\n\r\n"
    assert response_head(599, [], reason=b"Odd") == b"HTTP/1.1 599 Odd\r\n\r\n"
    assert response_head(200, [], reason=b"") == b"HTTP/1.1 200 \r\n\r\n"


@pytest.mark.parametrize("status", [99, 600, 999, 1000, -1, 0, "200", True])
def test_invalid_status(status: object) -> None:
    with pytest.raises(LocalProtocolError):
        response_head(status, [])  # type: ignore[arg-type]


@pytest.mark.parametrize("reason", [b"OK\r\nX: y", b"OK\n", b"a\x00b", b"a\x7f"])
def test_reason_injection(reason: bytes) -> None:
    with pytest.raises(LocalProtocolError):
        response_head(200, [], reason=reason)


@pytest.mark.parametrize(
    "value",
    [
        b"a\r\nSet-Cookie: evil=1",
        b"a\rb",
        b"a\nb",
        b"\r\n",
        b"a\x00b",
        b"trailing\r\n",
        b"\x1b[31mred",  # RFC 9110 5.5: no CTL but HTAB; undici refuses the whole response
        b"a\x7fb",
        b"a\x01b",
        b"a\x0bb",
    ],
)
def test_header_value_injection(value: bytes) -> None:
    with pytest.raises(LocalProtocolError):
        response_head(200, [(b"Content-Type", b"text/plain"), (b"X-Thing", value)])


@pytest.mark.parametrize(
    "name", [b"", b"X Thing", b"X:Thing", b"X\r\nY", b"X\n", b"X\x00", b"X\xc3\xa9", b"(x)"]
)
def test_header_name_not_a_token(name: bytes) -> None:
    with pytest.raises(LocalProtocolError):
        response_head(200, [(name, b"v")])


@pytest.mark.parametrize("value", [b"\x1b[31mred", b"a\x7fb", b"a\x1fb"])
def test_header_lines_refuse_control_characters_too(value: bytes) -> None:
    with pytest.raises(LocalProtocolError, match="control character"):
        header_lines([(b"X-Thing", value)])


def test_valid_names_are_remembered_but_values_always_checked() -> None:
    assert response_head(200, [(b"X-Seen", b"1")]).endswith(b"X-Seen: 1\r\n\r\n")
    with pytest.raises(LocalProtocolError):
        response_head(200, [(b"X-Seen", b"1\r\nX: 2")])


def test_obs_text_and_tabs_in_values_are_allowed() -> None:
    head = response_head(200, [(b"X", b"caf\xc3\xa9\tok")])
    assert head == b"HTTP/1.1 200 OK\r\nX: caf\xc3\xa9\tok\r\n\r\n"


@pytest.mark.parametrize(
    ("data", "framed"),
    [
        (b"hello", b"5\r\nhello\r\n"),
        (b"x" * 255, b"ff\r\n" + b"x" * 255 + b"\r\n"),
        (b"x" * 4096, b"1000\r\n" + b"x" * 4096 + b"\r\n"),
        (b"\r\n", b"2\r\n\r\n\r\n"),
    ],
)
def test_encode_chunk(data: bytes, framed: bytes) -> None:
    assert encode_chunk(data) == framed


def test_constants() -> None:
    assert CONTINUE_100 == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert LAST_CHUNK == b"0\r\n\r\n"
