"""Response framing decided in one place: app fields reconciled with the chosen framing."""

from __future__ import annotations

import pytest

from reactor.proto.framing import CLOSE_DELIMITED, FramingError, frame_response

CT = (b"Content-Type", b"text/plain")


def frame(status: int, headers: list[tuple[bytes, bytes]], length: int | None, *,
          head: bool = False, keep_alive: bool = True, http10: bool = False):
    return frame_response(status, headers, length, head, keep_alive, http10)


def test_known_length_gets_one_content_length() -> None:
    lines, block, length, chunked, keep = frame(200, [CT], 5)
    assert lines == b"Content-Length: 5\r\n"
    assert block == b"Content-Type: text/plain\r\n"
    assert (length, chunked, keep) == (5, False, True)


@pytest.mark.parametrize("name", [b"Content-Length", b"content-length", b"CONTENT-LENGTH"])
def test_app_content_length_that_agrees_is_sent_once(name: bytes) -> None:
    lines, block, length, _, _ = frame(200, [CT, (name, b"5")], 5)
    head = lines + block
    assert head.lower().count(b"content-length") == 1
    assert b"Content-Length: 5\r\n" in head and length == 5


def test_app_content_length_that_disagrees_is_an_app_error() -> None:
    with pytest.raises(FramingError, match="Content-Length 10"):
        frame(200, [(b"Content-Length", b"10")], 5)


@pytest.mark.parametrize("value", [b"abc", b"-1", b"1 2", b"\xd9\xa3"])
def test_invalid_app_content_length_is_an_app_error(value: bytes) -> None:
    with pytest.raises(FramingError):
        frame(200, [(b"Content-Length", value)], 5)


def test_stream_of_announced_length_goes_out_unchunked() -> None:
    lines, block, length, chunked, keep = frame(200, [(b"Content-Length", b"1000")], None)
    assert lines == b"Content-Length: 1000\r\n" and block == b""
    assert (length, chunked, keep) == (1000, False, True)


def test_stream_of_unknown_length_is_chunked_on_http11() -> None:
    lines, _, length, chunked, keep = frame(200, [CT], None)
    assert lines == b"Transfer-Encoding: chunked\r\n"
    assert (length, chunked, keep) == (0, True, True)


@pytest.mark.parametrize(("headers", "keep_alive"), [
    ([CT], False),  # the client's Connection: close, a stop, a request limit
    ([CT, (b"Connection", b"close")], True),  # the app's
])
def test_stream_of_unknown_length_is_chunked_on_http11_when_closing_too(
        headers: list[tuple[bytes, bytes]], keep_alive: bool) -> None:
    # the last chunk tells a whole body from a cut one; a close cannot
    lines, _, length, chunked, keep = frame(200, headers, None, keep_alive=keep_alive)
    assert lines == b"Transfer-Encoding: chunked\r\nConnection: close\r\n"
    assert (length, chunked, keep) == (0, True, False)
    head = frame(200, headers, None, head=True, keep_alive=keep_alive)
    assert head[0] == lines and head[2:] == (0, False, False)  # what the GET says, no body


def test_stream_on_http10_is_close_delimited() -> None:
    lines, _, length, chunked, keep = frame(200, [CT], None, http10=True)
    assert lines == b"Connection: close\r\n"
    assert (length, chunked, keep) == (CLOSE_DELIMITED, False, False)


@pytest.mark.parametrize("field", [
    (b"Transfer-Encoding", b"chunked"), (b"transfer-encoding", b"gzip, chunked"),
    (b"Keep-Alive", b"timeout=5"), (b"Proxy-Connection", b"keep-alive"), (b"TE", b"trailers"),
    (b"Upgrade", b"websocket"), (b"Connection", b"keep-alive"),
])
def test_hop_by_hop_fields_from_the_app_are_dropped(field: tuple[bytes, bytes]) -> None:
    lines, block, _, _, keep = frame(200, [CT, field, (b"X-After", b"1")], 2)
    assert lines == b"Content-Length: 2\r\n"
    assert block == b"Content-Type: text/plain\r\nX-After: 1\r\n" and keep


def test_app_connection_close_is_honoured_once() -> None:
    lines, block, _, _, keep = frame(200, [(b"Connection", b"Close")], 2)
    assert not keep and lines == b"Content-Length: 2\r\nConnection: close\r\n"
    assert block == b""


@pytest.mark.parametrize("status", [100, 103, 204])
def test_no_framing_fields_on_1xx_and_204(status: int) -> None:
    lines, block, length, chunked, _ = frame(status, [(b"Content-Length", b"0"),
                                                      (b"Transfer-Encoding", b"chunked")], 0)
    assert lines == b"" and block == b"" and length == 0 and not chunked


@pytest.mark.parametrize(("keep_alive", "http10", "connection"), [
    (True, False, b""), (False, False, b"Connection: close\r\n"),
    (True, True, b"Connection: keep-alive\r\n"), (False, True, b"Connection: close\r\n"),
])
def test_a_204_says_whether_the_connection_stays(keep_alive: bool, http10: bool,
                                                 connection: bytes) -> None:
    # RFC 9112 9.6: a server closing after the response sends "close" -- a 204 too
    lines, _, _, _, keep = frame_response(204, [], 0, False, keep_alive, http10)
    assert (lines, keep) == (connection, keep_alive)


def test_101_keeps_upgrade_and_says_connection_upgrade() -> None:
    lines, block, length, _, keep = frame(101, [(b"Upgrade", b"toy")], 0)
    assert lines == b"Connection: upgrade\r\n" and block == b"Upgrade: toy\r\n"
    assert length == 0 and keep


@pytest.mark.parametrize(("keep_alive", "http10", "connection"), [
    (True, False, b"Connection: upgrade\r\n"),
    (False, False, b"Connection: close, upgrade\r\n"),
    (True, True, b"Connection: keep-alive, upgrade\r\n"),
])
def test_426_keeps_upgrade_and_lists_it_in_connection(keep_alive: bool, http10: bool,
                                                      connection: bytes) -> None:
    # RFC 9110 15.5.22: a 426 MUST send Upgrade; 7.8: its sender lists "upgrade" in Connection
    lines, block, length, _, keep = frame(
        426, [CT, (b"Upgrade", b"websocket"), (b"Content-Length", b"2")], 2,
        keep_alive=keep_alive, http10=http10)
    assert lines == b"Content-Length: 2\r\n" + connection
    assert block == b"Content-Type: text/plain\r\nUpgrade: websocket\r\n"
    assert (length, keep) == (2, keep_alive)


def test_426_without_upgrade_is_framed_as_any_response() -> None:
    assert frame(426, [CT, (b"Keep-Alive", b"x")], 2) == frame(426, [CT], 2)


def test_426_whose_length_disagrees_is_still_an_app_error() -> None:
    with pytest.raises(FramingError):
        frame(426, [(b"Upgrade", b"websocket"), (b"Content-Length", b"9")], 2)


def test_304_sends_no_body_and_no_invented_length() -> None:
    lines, _, length, chunked, _ = frame(304, [(b"ETag", b'"x"')], 0)
    assert lines == b"" and length == 0 and not chunked
    lines, _, _, _, _ = frame(304, [(b"Content-Length", b"99")], 0)
    assert lines == b"Content-Length: 99\r\n"  # the selected representation's length


def test_head_sends_no_body_but_the_get_length() -> None:
    lines, _, length, _, _ = frame(200, [CT], 12, head=True)
    assert lines == b"Content-Length: 12\r\n" and length == 0
    lines, _, length, _, _ = frame(200, [(b"Content-Length", b"4096")], 0, head=True)
    assert lines == b"Content-Length: 4096\r\n" and length == 0


def test_http10_keep_alive_is_said_explicitly() -> None:
    lines, _, _, _, keep = frame(200, [], 1, http10=True)
    assert lines == b"Content-Length: 1\r\nConnection: keep-alive\r\n" and keep


def test_response_splitting_is_still_refused() -> None:
    with pytest.raises(Exception, match="control character"):
        frame(200, [(b"X-Evil", b"a\r\nSet-Cookie: x=1")], 0)
