"""RequestParser: valid and invalid requests as tables, pipelining, limits, incremental input.

The helpers at the top (drain, parse, parse_error, Collector, feed_pieces) are also used by
test_http1_fuzz.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from reactor.proto import (
    END_OF_MESSAGE,
    NEED_DATA,
    Data,
    EndOfMessage,
    RemoteProtocolError,
    RequestHead,
    RequestParser,
    split_absolute_form,
)
from reactor.proto.headers import BLOCK_CACHE

HeadSummary = tuple[Any, ...]


def head_summary(head: RequestHead) -> HeadSummary:
    return (
        head.method,
        head.target,
        head.version,
        tuple(head.headers),
        head.keep_alive,
        head.expect_continue,
        head.content_length,
        head.chunked,
    )


def drain(parser: RequestParser, limit: int = 100_000) -> list[Any]:
    """Every event up to NEED_DATA (exclusive). Fails the test on a runaway loop."""
    events: list[Any] = []
    for _ in range(limit):
        event = parser.next_event()
        if event is NEED_DATA:
            return events
        events.append(event)
    raise AssertionError("parser never returned NEED_DATA")


def parse(data: bytes, **limits: int) -> list[Any]:
    parser = RequestParser(**limits)
    parser.feed(data)
    return drain(parser)


def parse_error(data: bytes, **limits: int) -> RemoteProtocolError:
    parser = RequestParser(**limits)
    parser.feed(data)
    try:
        drain(parser)
    except RemoteProtocolError as exc:
        return exc
    raise AssertionError(f"no RemoteProtocolError for {data!r}")


class Collector:
    """Folds events into whole messages: (head summary, body, trailers)."""

    def __init__(self) -> None:
        self.messages: list[tuple[HeadSummary, bytes, tuple[tuple[bytes, bytes], ...]]] = []
        self._head: RequestHead | None = None
        self._body: list[bytes] = []

    def add(self, event: Any) -> None:
        if isinstance(event, RequestHead):
            assert self._head is None, "head inside a message"
            self._head = event
            self._body = []
        elif isinstance(event, Data):
            assert self._head is not None, "data outside a message"
            assert isinstance(event.data, bytes) and event.data, "empty or non-bytes Data"
            self._body.append(event.data)
        elif isinstance(event, EndOfMessage):
            assert self._head is not None, "end outside a message"
            self.messages.append(
                (head_summary(self._head), b"".join(self._body), tuple(event.trailers))
            )
            self._head = None
        else:
            raise AssertionError(f"unexpected event {event!r}")


def feed_pieces(
    pieces: Iterable[bytes], **limits: int
) -> tuple[Collector, RemoteProtocolError | None]:
    """Feed ``pieces`` one by one, draining after each; stop at the first protocol error.

    Events are collected as they come, so messages completed before an error are kept.
    """
    parser = RequestParser(**limits)
    collector = Collector()
    try:
        for piece in pieces:
            parser.feed(piece)
            for _ in range(100_000):
                event = parser.next_event()
                if event is NEED_DATA:
                    break
                collector.add(event)
            else:
                raise AssertionError("parser never returned NEED_DATA")
    except RemoteProtocolError as exc:
        return collector, exc
    return collector, None


# -- valid requests --------------------------------------------------------------------------

H = b"Host: example.com\r\n"
CHUNKED = b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"


def message(
    data: bytes, **limits: int
) -> tuple[HeadSummary, bytes, tuple[tuple[bytes, bytes], ...]]:
    collector = Collector()
    for event in parse(data, **limits):
        collector.add(event)
    assert len(collector.messages) == 1, collector.messages
    return collector.messages[0]


def test_simple_get() -> None:
    events = parse(b"GET /echo/abc HTTP/1.1\r\nHost: x\r\nUser-Agent: wrk\r\n\r\n")
    assert len(events) == 2
    head, end = events
    assert isinstance(head, RequestHead)
    assert head.method == b"GET"
    assert head.target == b"/echo/abc"
    assert head.version == b"1.1"
    assert head.headers == [(b"host", b"x"), (b"user-agent", b"wrk")]
    assert head.keep_alive is True
    assert head.expect_continue is False
    assert head.content_length == 0
    assert head.chunked is False
    assert end is END_OF_MESSAGE


@pytest.mark.parametrize(
    ("data", "attrs"),
    [
        pytest.param(
            b"GET http://example.com/a?b=1 HTTP/1.1\r\n" + H + b"\r\n",
            {"target": b"http://example.com/a?b=1"},
            id="absolute-form",
        ),
        pytest.param(
            b"GET HTTPS://example.com HTTP/1.1\r\n" + H + b"\r\n",
            {"target": b"HTTPS://example.com"},
            id="absolute-form-https-uppercase-scheme",
        ),
        pytest.param(b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n", {"target": b"*"}, id="asterisk-form"),
        pytest.param(
            b"CONNECT example.com:443 HTTP/1.1\r\n" + H + b"\r\n",
            {"method": b"CONNECT", "target": b"example.com:443"},
            id="authority-form",
        ),
        pytest.param(
            b"\r\n\r\nGET / HTTP/1.1\r\n" + H + b"\r\n", {"target": b"/"}, id="leading-crlf"
        ),
        pytest.param(
            b"PROPFIND /dav HTTP/1.1\r\n" + H + b"\r\n",
            {"method": b"PROPFIND"},
            id="extension-method",
        ),
        pytest.param(
            b"GET /%7Euser/a%20b?q=%22x%22&y=~ HTTP/1.1\r\n" + H + b"\r\n",
            {"target": b"/%7Euser/a%20b?q=%22x%22&y=~"},
            id="target-kept-raw",
        ),
        pytest.param(
            b"GET / HTTP/1.0\r\n\r\n",
            {"version": b"1.0", "keep_alive": False, "headers": []},
            id="http10-no-host",
        ),
        pytest.param(
            b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            {"keep_alive": True},
            id="http10-keep-alive",
        ),
        pytest.param(
            b"GET / HTTP/1.2\r\n" + H + b"\r\n",
            {"version": b"1.1", "keep_alive": True},
            id="later-minor-version-is-http11",
        ),
        pytest.param(
            b"POST / HTTP/1.9\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n",
            {"version": b"1.1", "chunked": True},
            id="http19-may-send-chunked",
        ),
        pytest.param(
            b"GET / HTTP/1.0\r\nConnection: Upgrade, Keep-Alive\r\n\r\n",
            {"keep_alive": True},
            id="http10-keep-alive-in-list",
        ),
        pytest.param(
            b"GET / HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n",
            {"keep_alive": False},
            id="http11-close",
        ),
        pytest.param(
            b"GET / HTTP/1.1\r\n" + H + b"Connection: foo,  CLOSE \r\n\r\n",
            {"keep_alive": False},
            id="http11-close-in-list",
        ),
        pytest.param(
            b"GET / HTTP/1.1\r\n" + H + b"Connection: keep-alive\r\nConnection: close\r\n\r\n",
            {"keep_alive": False},
            id="http11-close-in-second-field",
        ),
        pytest.param(
            b"GET / HTTP/1.1\r\n" + H + b"Connection: upgrade\r\n\r\n",
            {"keep_alive": True},
            id="http11-default-keep-alive",
        ),
        pytest.param(
            b"GET / HTTP/1.1\r\nHOST:  example.com \t\r\nX-Empty:\r\nX-Dup: 1\r\nx-dup: 2\r\n\r\n",
            {
                "headers": [
                    (b"host", b"example.com"),
                    (b"x-empty", b""),
                    (b"x-dup", b"1"),
                    (b"x-dup", b"2"),
                ]
            },
            id="names-lowered-values-stripped-duplicates-kept",
        ),
        pytest.param(
            b"GET / HTTP/1.1\r\n" + H + b"X-Text: caf\xc3\xa9 \t tab\r\n\r\n",
            {"headers": [(b"host", b"example.com"), (b"x-text", b"caf\xc3\xa9 \t tab")]},
            id="obs-text-and-inner-whitespace-in-value",
        ),
        pytest.param(
            b"GET / HTTP/1.1\r\n" + H + b"Weird-Name!#$%&'*+.^_`|~: v\r\n\r\n",
            {"headers": [(b"host", b"example.com"), (b"weird-name!#$%&'*+.^_`|~", b"v")]},
            id="all-token-chars-in-name",
        ),
    ],
)
def test_valid_head(data: bytes, attrs: dict[str, Any]) -> None:
    (head,) = [event for event in parse(data) if isinstance(event, RequestHead)]
    for name, expected in attrs.items():
        assert getattr(head, name) == expected, name


@pytest.mark.parametrize("host", [
    b"", b"example.com", b"EXAMPLE.com:8080", b"localhost:", b"127.0.0.1:4221", b"a_b-c~d",
    b"xn--nxasmq6b.example", b"%41b", b"[::1]", b"[::1]:443", b"[::ffff:192.0.2.1]",
    b"[v1.fe]", b"a!$&'()*+,;=", b"x:99999",
])
def test_a_host_of_the_rfc_grammar_is_accepted(host: bytes) -> None:
    (head,) = parse(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")[:1]
    assert head.headers == [(b"host", host)]


@pytest.mark.parametrize(("target", "kept"), [
    (b"/echo/a#frag", b"/echo/a"),
    (b"/a?x=1#f", b"/a?x=1"),
    (b"/a#b#c", b"/a"),
    (b"http://h.example/p#f", b"http://h.example/p"),
])
def test_a_fragment_in_the_target_is_dropped(target: bytes, kept: bytes) -> None:
    (head,) = parse(b"GET " + target + b" HTTP/1.1\r\n" + H + b"\r\n")[:1]
    assert head.target == kept


@pytest.mark.parametrize("target", [b"#frag", b"http://#f", b"/a\x7f#f"])
def test_what_is_left_of_a_target_without_its_fragment_must_still_be_one(target: bytes
                                                                          ) -> None:
    error = parse_error(b"GET " + target + b" HTTP/1.1\r\n" + H + b"\r\n")
    assert error.reason == "invalid-request-target"


def test_an_asterisk_form_keeps_its_asterisk_without_the_fragment() -> None:
    (head,) = parse(b"OPTIONS *#x HTTP/1.1\r\n" + H + b"\r\n")[:1]
    assert head.target == b"*"


@pytest.mark.parametrize(("target", "authority", "rest"), [
    (b"http://a.example/x?q=1", b"a.example", b"/x?q=1"),
    (b"http://a.example", b"a.example", b"/"),
    (b"http://a.example?q=/x", b"a.example", b"/?q=/x"),
    (b"HTTPS://[::1]:8443/", b"[::1]:8443", b"/"),
])
def test_split_absolute_form(target: bytes, authority: bytes, rest: bytes) -> None:
    assert split_absolute_form(target) == (authority, rest)


def test_valid_hosts_are_remembered_within_a_bound_and_invalid_ones_never() -> None:
    from reactor.proto import headers
    for n in range(3 * headers._VALID_HOSTS_MAX):
        parse(b"GET / HTTP/1.1\r\nHost: h%d.example\r\n\r\n" % n)
        assert len(headers._VALID_HOSTS) <= headers._VALID_HOSTS_MAX
    for _ in range(2):
        assert parse_error(b"GET / HTTP/1.1\r\nHost: a b\r\nX: 1\r\n\r\n").reason == "invalid-host"
    assert b"a b" not in headers._VALID_HOSTS


@pytest.mark.parametrize(
    ("data", "content_length", "chunked", "body", "trailers"),
    [
        pytest.param(
            b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nhello",
            5,
            False,
            b"hello",
            (),
            id="content-length",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0\r\n\r\n",
            0,
            False,
            b"",
            (),
            id="content-length-zero",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5, 5\r\n\r\nhello",
            5,
            False,
            b"hello",
            (),
            id="identical-list-content-length",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\n" + H + b"Content-Length: " + b"0" * 30 + b"5\r\n\r\nhello",
            5,
            False,
            b"hello",
            (),
            id="content-length-leading-zeros",  # 1*DIGIT: HAProxy forwards it as it came
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\n" + H + b"Content-Length: " + b"0" * 5000 + b"\r\n\r\n",
            0,
            False,
            b"",
            (),
            id="content-length-many-zeros",  # more digits than int() takes from a string
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
            5,
            False,
            b"hello",
            (),
            id="identical-duplicate-content-length",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 007\r\n\r\nabcdefg",
            7,
            False,
            b"abcdefg",
            (),
            id="leading-zeros",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            None,
            True,
            b"hello world",
            (),
            id="chunked",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: Chunked\r\n\r\n"
            b'A;name=value;flag\r\n0123456789\r\n1 ; q="x y"\r\n!\r\n'
            b"000;last\r\nX-Checksum: abc\r\nX-Other:  2 \r\n\r\n",
            None,
            True,
            b"0123456789!",
            ((b"x-checksum", b"abc"), (b"x-other", b"2")),
            id="chunked-extensions-and-trailers",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: ,chunked,\r\n\r\n0\r\n\r\n",
            None,
            True,
            b"",
            (),
            id="chunked-with-empty-list-elements",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
            b"ff\r\n" + b"x" * 255 + b"\r\n0\r\n\r\n",
            None,
            True,
            b"x" * 255,
            (),
            id="chunked-hex-size",
        ),
    ],
)
def test_valid_body(
    data: bytes,
    content_length: int | None,
    chunked: bool,
    body: bytes,
    trailers: tuple[tuple[bytes, bytes], ...],
) -> None:
    head, got_body, got_trailers = message(data)
    assert head[6] == content_length
    assert head[7] is chunked
    assert got_body == body
    assert got_trailers == trailers


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            b"POST / HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 3\r\n\r\n",
            True,
            id="content-length",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\n" + H + b"Expect: 100-Continue\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            True,
            id="chunked-case-insensitive",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 0\r\n\r\n",
            False,
            id="no-body",
        ),
        pytest.param(
            b"GET / HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\n\r\n", False, id="no-framing"
        ),
        pytest.param(
            b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
            False,
            id="http10",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\n" + H + b"Expect: something-else\r\nContent-Length: 3\r\n\r\n",
            False,
            id="other-expectation",
        ),
    ],
)
def test_expect_continue(data: bytes, expected: bool) -> None:
    parser = RequestParser()
    parser.feed(data)
    head = parser.next_event()
    assert isinstance(head, RequestHead)
    assert head.expect_continue is expected
    # The body has not been sent yet: the caller answers 100 Continue first.
    if expected:
        assert parser.next_event() is NEED_DATA
        assert parser.in_message and parser.head_complete


# -- invalid requests ------------------------------------------------------------------------

BAD_REQUESTS = [
    # framing (request smuggling)
    (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        400,
        "content-length-and-transfer-encoding",
    ),
    (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        400,
        "content-length-and-transfer-encoding",
    ),
    (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "transfer-encoding-in-http10"),
    (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, chunked\r\n\r\n",
        400,
        "chunked-twice",
    ),
    (
        b"POST / HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        400,
        "chunked-twice",
    ),
    (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: \r\n\r\n", 400, "empty-transfer-encoding"),
    (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n",
        501,
        "unsupported-transfer-coding",
    ),
    (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n",
        501,
        "unsupported-transfer-coding",
    ),
    (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, gzip\r\n\r\n",
        400,
        "chunked-not-last",
    ),
    # RFC 9112 6.3: chunked not the final coding is a 400, also before a coding we do not know
    (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, identity\r\n\r\n",
        400,
        "chunked-not-last",
    ),
    (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n"
        b"Transfer-Encoding: x\r\n\r\n",
        400,
        "chunked-not-last",
    ),
    (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: identity\r\n\r\n",
        501,
        "unsupported-transfer-coding",
    ),
    (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked;q=1\r\n\r\n",
        501,
        "unsupported-transfer-coding",
    ),
    (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +5\r\n\r\nhello",
        400,
        "invalid-content-length",
    ),
    (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", 400, "invalid-content-length"),
    (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1 2\r\n\r\n", 400, "invalid-content-length"),
    (b"POST / HTTP/1.1\r\n" + H + b"Content-Length:\r\n\r\n", 400, "invalid-content-length"),
    (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0x10\r\n\r\n", 400, "invalid-content-length"),
    (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5,\r\n\r\n", 400, "invalid-content-length"),
    (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: \xd9\xa5\r\n\r\n",
        400,
        "invalid-content-length",
    ),
    (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5, 6\r\n\r\n",
        400,
        "conflicting-content-length",
    ),
    (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n",
        400,
        "conflicting-content-length",
    ),
    (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 05\r\n\r\n",
        400,
        "conflicting-content-length",
    ),
    (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: " + b"9" * 40 + b"\r\n\r\n",
        400,
        "content-length-too-long",
    ),
    (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0" + b"9" * 19 + b"\r\n\r\n",
        400,
        "content-length-too-long",
    ),
    # request line
    (b"GET  / HTTP/1.1\r\n" + H + b"\r\n", 400, "invalid-request-line"),
    (b"GET / HTTP/1.1 \r\n" + H + b"\r\n", 400, "invalid-request-line"),
    (b"GET /\r\n" + H + b"\r\n", 400, "invalid-request-line"),
    (b"GET\t/ HTTP/1.1\r\n" + H + b"\r\n", 400, "invalid-request-line"),
    (b" / HTTP/1.1\r\n" + H + b"\r\n", 400, "invalid-method"),
    (b"G(T / HTTP/1.1\r\n" + H + b"\r\n", 400, "invalid-method"),
    (b"G\xc3\xa9T / HTTP/1.1\r\n" + H + b"\r\n", 400, "invalid-method"),
    (b"GET /a\x00b HTTP/1.1\r\n" + H + b"\r\n", 400, "invalid-request-target"),
    (b"GET /a\x7fb HTTP/1.1\r\n" + H + b"\r\n", 400, "invalid-request-target"),
    (b"GET /a\tb HTTP/1.1\r\n" + H + b"\r\n", 400, "invalid-request-target"),
    (b"GET /caf\xc3\xa9 HTTP/1.1\r\n" + H + b"\r\n", 400, "invalid-request-target"),
    (b"GET foo HTTP/1.1\r\n" + H + b"\r\n", 400, "invalid-request-target"),
    (b"GET example.com:443 HTTP/1.1\r\n" + H + b"\r\n", 400, "invalid-request-target"),
    (b"CONNECT example.com HTTP/1.1\r\n" + H + b"\r\n", 400, "invalid-request-target"),
    # the authority-form host follows the Host grammar too
    *[(b"CONNECT " + target + b" HTTP/1.1\r\n" + H + b"\r\n", 400, "invalid-request-target")
      for target in (b"[::1:443", b"a^b:443", b"user@a:443", b":443", b"a:")],
    (b"GET ftp://example.com/ HTTP/1.1\r\n" + H + b"\r\n", 400, "invalid-request-target"),
    (b"GET http:// HTTP/1.1\r\n" + H + b"\r\n", 400, "invalid-request-target"),
    # RFC 9110 4.2.1: an empty host "MUST" be rejected; 4.2.4: userinfo is an error
    *[(b"GET " + target + b" HTTP/1.1\r\n" + H + b"\r\n", 400, "invalid-request-target")
      for target in (b"http:///x", b"http://?q", b"http://:80/", b"https://user@a.example/",
                     b"http://a.example:x/", b"http://[::1/", b"http://a\\b/")],
    (b"GET * HTTP/1.1\r\n" + H + b"\r\n", 400, "asterisk-form-without-options"),
    (b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505, "unsupported-http-version"),
    (b"GET / HTTP/3.0\r\n" + H + b"\r\n", 505, "unsupported-http-version"),
    (b"GET / HTTP/0.9\r\n" + H + b"\r\n", 505, "unsupported-http-version"),
    (b"GET / HTTP/1\r\n" + H + b"\r\n", 400, "invalid-http-version"),
    (b"GET / http/1.1\r\n" + H + b"\r\n", 400, "invalid-http-version"),
    (b"GET / HTTP/1.10\r\n" + H + b"\r\n", 400, "invalid-http-version"),
    (b"GET / HTTP/a.b\r\n" + H + b"\r\n", 400, "invalid-http-version"),
    (b"GET / FOO/1.1\r\n" + H + b"\r\n", 400, "invalid-http-version"),
    # line endings
    (b"GET / HTTP/1.1\nHost: x\n\n", 400, "bare-lf"),
    (b"GET / HTTP/1.1\r\nHost: x\n\r\n", 400, "bare-lf"),
    (b"GET / HTTP/1.1\nHost: x\r\n\r\n", 400, "bare-lf"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\nb\r\n\r\n", 400, "bare-lf"),
    (b"\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bare-lf"),
    (b"GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n", 400, "bare-cr"),
    (b"GET / HTTP/1.1\rHost: x\r\n\r\n", 400, "bare-cr"),
    (b"GET / HTTP/1.1\r\nHost: x\r\r\n\r\n", 400, "bare-cr"),
    # header fields
    (b"GET / HTTP/1.1\r\n" + H + b"X: a\r\n b\r\n\r\n", 400, "obs-fold"),
    (b"GET / HTTP/1.1\r\n" + H + b"X: a\r\n\tb\r\n\r\n", 400, "obs-fold"),
    (b"GET / HTTP/1.1\r\n Host: x\r\n\r\n", 400, "obs-fold"),
    (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400, "whitespace-before-colon"),
    (b"GET / HTTP/1.1\r\n" + H + b"X-Foo\t: x\r\n\r\n", 400, "whitespace-before-colon"),
    (b"GET / HTTP/1.1\r\n" + H + b"X-Foo\r\n\r\n", 400, "missing-colon"),
    (b"GET / HTTP/1.1\r\nHost\r\n\r\n", 400, "missing-colon"),
    (b"GET / HTTP/1.1\r\n" + H + b": x\r\n\r\n", 400, "empty-field-name"),
    (b"GET / HTTP/1.1\r\n" + H + b"X(Foo): x\r\n\r\n", 400, "invalid-field-name"),
    (b"GET / HTTP/1.1\r\n" + H + b"X F: x\r\n\r\n", 400, "invalid-field-name"),
    (b"GET / HTTP/1.1\r\n" + H + b"X\xc3\xa9: x\r\n\r\n", 400, "invalid-field-name"),
    (b"GET / HTTP/1.1\r\n" + H + b"X: a\x00b\r\n\r\n", 400, "invalid-field-value"),
    (b"GET / HTTP/1.1\r\n" + H + b"X: a\x01b\r\n\r\n", 400, "invalid-field-value"),
    (b"GET / HTTP/1.1\r\n" + H + b"X: a\x1bb\r\n\r\n", 400, "invalid-field-value"),
    (b"GET / HTTP/1.1\r\n" + H + b"X: a\x7fb\r\n\r\n", 400, "invalid-field-value"),
    # Host (RFC 9112 3.2)
    (b"GET / HTTP/1.1\r\n\r\n", 400, "missing-host"),
    (b"GET / HTTP/1.1\r\nX-Host: a\r\n\r\n", 400, "missing-host"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400, "duplicate-host"),
    (b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", 400, "duplicate-host"),
    # RFC 9112 3.2: "a Host header field with an invalid field value" is a 400 too
    *[(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n", 400, "invalid-host") for host in (
        b"a b", b"[::1", b"[::1]x", b"[:::]", b"[fe80::1%25eth0]", b"x:abc", b"x:8080:80",
        b"user@host", b"exa/mple", b"h?q", b"h#f", b'x"y', b"x\\y", b"%4", b"%zz",
        b"\xc3\xa9.example",
    )],
    (b"GET / HTTP/1.0\r\nHost: a/b\r\n\r\n", 400, "invalid-host"),
    # chunked bodies
    (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
        400,
        "invalid-chunk-size",
    ),
    (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n-5\r\n",
        400,
        "invalid-chunk-size",
    ),
    (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n\r\n",
        400,
        "invalid-chunk-size",
    ),
    (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0x5\r\n",
        400,
        "invalid-chunk-size",
    ),
    (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n 5\r\n",
        400,
        "invalid-chunk-size",
    ),
    (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5 \r\n",
        400,
        "invalid-chunk-size",
    ),
    (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n1_0\r\n",
        400,
        "invalid-chunk-size",
    ),
    (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n" + b"1" * 17 + b"\r\n",
        400,
        "invalid-chunk-size",
    ),
    (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5;a\x00b\r\n",
        400,
        "invalid-chunk-extension",
    ),
    (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5;" + b"a" * 5000,
        400,
        "chunk-line-too-long",
    ),
    (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\nhello", 400, "bare-lf"),
    (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\rhello\r\n",
        400,
        "bare-cr",
    ),
    (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX",
        400,
        "invalid-chunk-end",
    ),
    (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n",
        400,
        "invalid-chunk-end",
    ),
    (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\nX: a\r\n b\r\n\r\n",
        400,
        "obs-fold",
    ),
    (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\nX : a\r\n\r\n",
        400,
        "whitespace-before-colon",
    ),
    (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\nX: \x01\r\n\r\n",
        400,
        "invalid-field-value",
    ),
    (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\nX\r\n\r\n",
        400,
        "missing-colon",
    ),
    (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\nX: a\nY: b\r\n\r\n",
        400,
        "bare-lf",
    ),
    # RFC 9112 7.1.1: chunk-ext-name is a token, so it cannot be empty.
    (CHUNKED + b"2;\r\nab\r\n0\r\n\r\n", 400, "invalid-chunk-extension"),
    (CHUNKED + b"2;=x\r\nab\r\n0\r\n\r\n", 400, "invalid-chunk-extension"),
    (CHUNKED + b"2; ;a\r\nab\r\n0\r\n\r\n", 400, "invalid-chunk-extension"),
    (CHUNKED + b"2;a=\r\nab\r\n0\r\n\r\n", 400, "invalid-chunk-extension"),
    (CHUNKED + b'2;a="x\r\nab\r\n0\r\n\r\n', 400, "invalid-chunk-extension"),
    (CHUNKED + b"2;a b\r\nab\r\n0\r\n\r\n", 400, "invalid-chunk-extension"),
    (CHUNKED + b"0;\r\n\r\n", 400, "invalid-chunk-extension"),
    # The earliest offending byte names the error, however the bytes are split (here: whole
    # and one by one). The 8,193rd byte of the request line comes before the bare LF...
    (b"GET /" + b"a" * 8200 + b" HTTP/1.1\nHost: a\n\n", 414, "request-line-too-long"),
    # ... the "b" after a bare CR before the end of the head, where asterisk-form is judged...
    (b"GET * HTTP/1.1\r\nHost: a\rb\r\n\r\n", 400, "bare-cr"),
    # ... a bare LF in a field line before a field count over the limit...
    (b"GET / HTTP/1.1\r\nHost: a\nb\r\n" + b"X: y\r\n" * 100 + b"\r\n", 400, "bare-lf"),
    # ... and a bare LF before the head passes its size limit.
    (b"GET / HTTP/1.1\r\nX: a\nb\r\nY: " + b"y" * 40000 + b"\r\n\r\n", 400, "bare-lf"),
    (b"GET / HTTP/1.1\r\nY: " + b"y" * 40000 + b"\r\nX: a\nb\r\n\r\n", 431, None),
    # A chunk-size line: the byte past its limit comes before a bare LF further on.
    (CHUNKED + b"1;a=" + b"b" * 4092 + b"c\nd\r\n", 400, "chunk-line-too-long"),
    (CHUNKED + b"1;a=" + b"b" * 4091 + b"\nd\r\n", 400, "bare-lf"),
    (CHUNKED + b"zz;a\x00\r\n", 400, "invalid-chunk-size"),
]


@pytest.mark.parametrize(("data", "status", "reason"), BAD_REQUESTS)
def test_invalid_request(data: bytes, status: int, reason: str | None) -> None:
    error = parse_error(data)
    assert error.status_hint == status
    if reason is not None:
        assert error.reason == reason
    # The same errors fire when the bytes trickle in one at a time.
    _, split_error = feed_pieces([data[i : i + 1] for i in range(len(data))])
    assert split_error is not None
    assert split_error.status_hint == status
    if reason is not None:
        assert split_error.reason == reason


@pytest.mark.parametrize(
    ("data", "limits", "status", "reason"),
    [
        pytest.param(
            b"GET /" + b"a" * 100 + b" HTTP/1.1\r\n" + H + b"\r\n",
            {"max_line_bytes": 64},
            414,
            "request-line-too-long",
            id="request-line-complete-head",
        ),
        pytest.param(
            b"GET /" + b"a" * 100,
            {"max_line_bytes": 64},
            414,
            "request-line-too-long",
            id="request-line-no-crlf-yet",
        ),
        pytest.param(
            b"GET /" + b"a" * 100 + b" HTTP/1.1\r\nHost: x",
            {"max_line_bytes": 64},
            414,
            "request-line-too-long",
            id="request-line-head-incomplete",
        ),
        pytest.param(
            b"GET / HTTP/1.1\r\n" + H + b"X: " + b"a" * 200 + b"\r\n\r\n",
            {"max_header_bytes": 128},
            431,
            "header-section-too-large",
            id="header-section-complete",
        ),
        pytest.param(
            b"GET / HTTP/1.1\r\n" + H + b"X: " + b"a" * 200,
            {"max_header_bytes": 128},
            431,
            "header-section-too-large",
            id="header-section-incomplete",
        ),
        pytest.param(
            b"GET / HTTP/1.1\r\n" + H + b"X: a\r\n" * 10 + b"\r\n",
            {"max_header_fields": 10},
            431,
            "too-many-header-fields",
            id="too-many-fields",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\n"
            + H
            + b"Transfer-Encoding: chunked\r\n\r\n0\r\n"
            + b"X: a\r\n" * 10
            + b"\r\n",
            {"max_header_fields": 10},
            431,
            "too-many-header-fields",
            id="trailers-count-with-header-fields",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\n"
            + H
            + b"Transfer-Encoding: chunked\r\n\r\n0\r\nX: "
            + b"a" * 100
            + b"\r\n\r\n",
            {"max_header_bytes": 128},
            431,
            "header-section-too-large",
            id="trailers-count-with-header-bytes",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\nX: " + b"a" * 100,
            {"max_header_bytes": 128},
            431,
            "header-section-too-large",
            id="trailers-incomplete",
        ),
    ],
)
def test_limits(data: bytes, limits: dict[str, int], status: int, reason: str) -> None:
    error = parse_error(data, **limits)
    assert (error.status_hint, error.reason) == (status, reason)


def test_limits_are_inclusive() -> None:
    request_line = b"GET /" + b"a" * 59 + b" HTTP/1.1"
    assert len(request_line) == 73
    head = request_line + b"\r\n" + H + b"\r\n"
    assert len(parse(head, max_line_bytes=73, max_header_bytes=len(head))) == 2
    assert parse_error(head, max_line_bytes=72).status_hint == 414
    assert parse_error(head, max_header_bytes=len(head) - 1).status_hint == 431
    fields = b"GET / HTTP/1.1\r\n" + H + b"X: a\r\n" * 9 + b"\r\n"
    assert len(parse(fields, max_header_fields=10)) == 2
    # Byte by byte, an exactly-fitting request line is not refused early.
    _, error = feed_pieces([bytes([b]) for b in head], max_line_bytes=73)
    assert error is None


def test_request_line_too_long_detected_before_crlf() -> None:
    parser = RequestParser(max_line_bytes=8192)
    parser.feed(b"GET /" + b"a" * 8187)  # 8192 bytes: fits if CRLF follows
    assert parser.next_event() is NEED_DATA
    parser.feed(b"\r")
    assert parser.next_event() is NEED_DATA
    other = RequestParser(max_line_bytes=8192)
    other.feed(b"GET /" + b"a" * 8187)
    assert other.next_event() is NEED_DATA
    other.feed(b"a")  # 8193 bytes without CRLF: refused without waiting for the head
    with pytest.raises(RemoteProtocolError) as info:
        other.next_event()
    assert (info.value.status_hint, info.value.reason) == (414, "request-line-too-long")


def test_header_section_too_large_detected_before_terminator() -> None:
    parser = RequestParser(max_header_bytes=1024)
    parser.feed(b"GET / HTTP/1.1\r\nX: " + b"a" * 1000)
    assert parser.next_event() is NEED_DATA
    parser.feed(b"a" * 100)
    with pytest.raises(RemoteProtocolError) as info:
        parser.next_event()
    assert info.value.status_hint == 431


# The first bytes of a TLS 1.2/1.3 ClientHello (record header, handshake header, version):
# what a client configured for https sends to a plain-HTTP port.
CLIENT_HELLO_START = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"


def test_a_byte_no_method_can_hold_is_refused_before_the_line_ends() -> None:
    parser = RequestParser()
    parser.feed(CLIENT_HELLO_START)
    with pytest.raises(RemoteProtocolError) as info:
        parser.next_event()
    assert (info.value.status_hint, info.value.reason) == (400, "invalid-method")
    for prefix in (b"GE", b"GET", b"GET /", b"M-SEARCH", b"GET\t", b"GET\r", b"\r\n\r\nGET"):
        parser = RequestParser()  # a method (or line) still arriving: no verdict yet
        parser.feed(prefix)
        assert parser.next_event() is NEED_DATA, prefix
    for bad in (b"G\x00", b"GET(", b"\x80", b" ", b"\r\n "):
        parser = RequestParser()
        parser.feed(bad)
        with pytest.raises(RemoteProtocolError) as info:
            parser.next_event()
        assert info.value.reason == "invalid-method", bad


def test_a_bad_method_byte_names_the_error_even_when_the_line_has_others() -> None:
    # Whole, the head would fail on its version (505) or its shape; a byte-by-byte feed stops
    # at the method's first bad byte, and the whole head is answered the same way.
    for head in (CLIENT_HELLO_START + b" / HTTP/2.0\r\nHost: x\r\n\r\n",
                 b"GE\x7fT / HTTP/1.1 extra\r\nHost: x\r\n\r\n"):
        whole = parse_error(head)
        _, bytewise = feed_pieces([bytes([b]) for b in head])
        assert bytewise is not None
        assert (whole.status_hint, whole.reason) == (bytewise.status_hint, bytewise.reason) == (
            400, "invalid-method")


def test_bare_lf_detected_before_terminator() -> None:
    parser = RequestParser()
    parser.feed(b"GET / HTTP/1.1\nHost: x\n")
    with pytest.raises(RemoteProtocolError) as info:
        parser.next_event()
    assert info.value.reason == "bare-lf"


def test_bare_cr_detected_before_terminator() -> None:
    parser = RequestParser()
    parser.feed(b"GET / HTTP/1.1\r")
    assert parser.next_event() is NEED_DATA
    parser.feed(b"Host: x")
    with pytest.raises(RemoteProtocolError) as info:
        parser.next_event()
    assert info.value.reason == "bare-cr"


def test_content_length_over_limit_raises_with_head_instead_of_head() -> None:
    parser = RequestParser(max_body_bytes=10)
    parser.feed(b"POST /upload HTTP/1.1\r\n" + H + b"Content-Length: 11\r\n\r\n")
    with pytest.raises(RemoteProtocolError) as info:
        parser.next_event()
    error = info.value
    assert (error.status_hint, error.reason) == (413, "body-too-large")
    assert error.head is not None
    assert (error.head.method, error.head.target) == (b"POST", b"/upload")
    assert error.head.content_length == 11


def test_content_length_at_limit_is_accepted() -> None:
    data = b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 10\r\n\r\n" + b"x" * 10
    assert message(data, max_body_bytes=10)[1] == b"x" * 10


def test_chunked_over_limit_raises_with_head() -> None:
    parser = RequestParser(max_body_bytes=10)
    parser.feed(b"POST /up HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n")
    head = parser.next_event()
    assert isinstance(head, RequestHead)
    parser.feed(b"6\r\nabcdef\r\n")
    assert parser.next_event() == Data(b"abcdef")
    assert parser.next_event() is NEED_DATA
    parser.feed(b"5\r\n")  # refused on the size line, before the data arrives
    with pytest.raises(RemoteProtocolError) as info:
        parser.next_event()
    assert (info.value.status_hint, info.value.reason) == (413, "body-too-large")
    assert info.value.head is head


def test_error_is_sticky() -> None:
    parser = RequestParser()
    parser.feed(b"GET / HTTP/1.1\r\nHost : x\r\n\r\n")
    with pytest.raises(RemoteProtocolError) as first:
        parser.next_event()
    parser.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(RemoteProtocolError) as second:
        parser.next_event()
    assert second.value is first.value
    assert not parser.head_complete


# -- bodies and events -----------------------------------------------------------------------


def test_whole_content_length_body_is_one_data_event() -> None:
    body = b"x" * 5000
    events = parse(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5000\r\n\r\n" + body)
    assert [type(event) for event in events] == [RequestHead, Data, EndOfMessage]
    assert events[1].data == body
    assert events[2] is END_OF_MESSAGE


def test_content_length_body_streams_as_it_arrives() -> None:
    parser = RequestParser()
    parser.feed(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 10\r\n\r\nabc")
    assert isinstance(parser.next_event(), RequestHead)
    assert parser.next_event() == Data(b"abc")
    assert parser.next_event() is NEED_DATA
    parser.feed(b"defg")
    assert parser.next_event() == Data(b"defg")
    assert parser.next_event() is NEED_DATA
    parser.feed(b"hijGET / HTTP/1.1\r\n")
    assert parser.next_event() == Data(b"hij")
    assert parser.next_event() is END_OF_MESSAGE
    assert parser.next_event() is NEED_DATA
    assert parser.in_message


def test_chunk_data_streams_without_waiting_for_the_whole_chunk() -> None:
    parser = RequestParser()
    parser.feed(b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n10\r\nabc")
    assert isinstance(parser.next_event(), RequestHead)
    assert parser.next_event() == Data(b"abc")
    assert parser.next_event() is NEED_DATA
    parser.feed(b"defghijklmnop\r")
    assert parser.next_event() == Data(b"defghijklmnop")
    assert parser.next_event() is NEED_DATA
    parser.feed(b"\n0\r\n")
    assert parser.next_event() is NEED_DATA
    parser.feed(b"\r\n")
    assert parser.next_event() is END_OF_MESSAGE


def test_many_small_chunks_come_out_as_few_data_events() -> None:
    body = b"".join(b"1\r\n" + bytes((97 + i % 26,)) + b"\r\n" for i in range(100_000))
    events = parse(CHUNKED + body + b"0\r\n\r\n")
    assert isinstance(events[0], RequestHead)
    assert events[-1] is END_OF_MESSAGE
    pieces = events[1:-1]
    assert 1 <= len(pieces) <= 2
    assert all(type(piece) is Data for piece in pieces)
    assert b"".join(piece.data for piece in pieces) == bytes(97 + i % 26 for i in range(100_000))


def test_chunks_fed_in_pieces_give_one_data_per_feed() -> None:
    parser = RequestParser()
    parser.feed(CHUNKED)
    assert isinstance(parser.next_event(), RequestHead)
    wire = b"3\r\nabc\r\n" * 1000
    for start in range(0, len(wire), 997):  # cuts inside size lines, data and CRLFs
        parser.feed(wire[start : start + 997])
        event = parser.next_event()
        assert type(event) is Data
        assert parser.next_event() is NEED_DATA
    parser.feed(b"0\r\n\r\n")
    assert parser.next_event() is END_OF_MESSAGE


def test_data_before_a_bad_chunk_is_handed_out_first() -> None:
    parser = RequestParser()
    parser.feed(CHUNKED + b"3\r\nabc\r\n2\r\nde\r\nzz\r\n")
    assert isinstance(parser.next_event(), RequestHead)
    assert parser.next_event() == Data(b"abcde")
    with pytest.raises(RemoteProtocolError) as info:
        parser.next_event()
    assert info.value.reason == "invalid-chunk-size"


def test_a_size_line_that_cannot_be_one_is_refused_before_its_crlf() -> None:
    # A client that announces chunked and sends the raw body, say: answered now, not after
    # the body timeout.
    for line in (b"hello", b"zz", b";x", b" 5", b"5 x", b"5 \r", b"1" * 17):
        parser = RequestParser()
        parser.feed(CHUNKED + line)
        assert isinstance(parser.next_event(), RequestHead)
        with pytest.raises(RemoteProtocolError) as info:
            parser.next_event()
        assert info.value.reason == "invalid-chunk-size", line
    for line in (b"5", b"5;", b"5 ", b"5 \t;", b"abcdef", b"5\r", b"\r", b"1" * 16):
        parser = RequestParser()  # could still become a valid line
        parser.feed(CHUNKED + line)
        assert isinstance(parser.next_event(), RequestHead)
        assert parser.next_event() is NEED_DATA, line


def test_a_bad_size_byte_names_the_error_even_when_the_line_has_a_bare_cr_after_it() -> None:
    # Byte by byte the "z" is refused before the bare CR arrives; whole, the same error.
    wire = CHUNKED + b"z\rX\r\n"
    whole = parse_error(wire)
    _, bytewise = feed_pieces([wire[i : i + 1] for i in range(len(wire))])
    assert bytewise is not None
    assert whole.reason == bytewise.reason == "invalid-chunk-size"


def test_chunked_limit_counts_coalesced_chunks() -> None:
    parser = RequestParser(max_body_bytes=5)
    parser.feed(CHUNKED + b"1\r\na\r\n" * 5 + b"1\r\nb\r\n")
    assert isinstance(parser.next_event(), RequestHead)
    assert parser.next_event() == Data(b"aaaaa")
    with pytest.raises(RemoteProtocolError) as info:
        parser.next_event()
    assert (info.value.status_hint, info.value.reason) == (413, "body-too-large")


def test_chunk_extensions_that_are_well_formed_are_accepted() -> None:
    events = parse(CHUNKED + b'2 ; a = "x;\\"y" ;b=c\t\r\nab\r\n1;n\r\nc\r\n0;last=1\r\n\r\n')
    assert b"".join(event.data for event in events if type(event) is Data) == b"abc"
    assert events[-1] is END_OF_MESSAGE


def test_trailers_are_carried_by_end_of_message() -> None:
    events = parse(
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\nServer-Timing: db;dur=53\r\nX-Sum: 1\r\n\r\n"
    )
    end = events[-1]
    assert isinstance(end, EndOfMessage)
    assert end is not END_OF_MESSAGE
    assert end.trailers == [(b"server-timing", b"db;dur=53"), (b"x-sum", b"1")]


def test_pipelined_requests_in_one_feed() -> None:
    requests = []
    expected = []
    for i in range(10):
        if i % 3 == 0:
            requests.append(b"GET /get/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
            expected.append((b"/get/%d" % i, b""))
        elif i % 3 == 1:
            body = b"body-%d" % i
            requests.append(
                b"POST /cl/%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                % (i, len(body), body)
            )
            expected.append((b"/cl/%d" % i, body))
        else:
            requests.append(
                b"POST /chunked/%d HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"2\r\nab\r\n1\r\nc\r\n0\r\n\r\n" % i
            )
            expected.append((b"/chunked/%d" % i, b"abc"))
    collector = Collector()
    for event in parse(b"".join(requests)):
        collector.add(event)
    assert [(head[1], body) for head, body, _ in collector.messages] == expected


def test_many_pipelined_requests_stay_linear() -> None:
    request = b"GET /echo/abc HTTP/1.1\r\nHost: x\r\nUser-Agent: wrk\r\n\r\n"
    stream = request * 10_000
    parser = RequestParser()
    heads = 0
    for start in range(0, len(stream), 65536):  # like recv(65536)
        parser.feed(stream[start : start + 65536])
        for event in drain(parser):
            heads += isinstance(event, RequestHead)
    assert heads == 10_000
    assert parser.buffered == 0


def test_slow_head_is_not_rescanned() -> None:
    # A head trickling in byte by byte must stay cheap (no quadratic rescans/copies).
    head = (
        b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 300) for i in range(90))
    )
    parser = RequestParser(max_header_bytes=64 * 1024)
    for i in range(len(head)):
        parser.feed(head[i : i + 1])
        assert parser.next_event() is NEED_DATA
    parser.feed(b"\r\n")
    assert isinstance(parser.next_event(), RequestHead)


# -- caller-facing state ---------------------------------------------------------------------


def test_in_message_and_head_complete() -> None:
    parser = RequestParser()
    assert not parser.in_message and not parser.head_complete
    parser.feed(b"\r\n")
    assert not parser.in_message
    assert parser.next_event() is NEED_DATA
    assert not parser.in_message
    parser.feed(b"\r")
    assert not parser.in_message  # may still be an empty line
    parser.feed(b"\nP")
    assert parser.in_message and not parser.head_complete
    assert parser.next_event() is NEED_DATA
    parser.feed(b"OST / HTTP/1.1\r\n" + H + b"Content-Length: 2\r\n\r\n")
    assert isinstance(parser.next_event(), RequestHead)
    assert parser.in_message and parser.head_complete
    assert parser.next_event() is NEED_DATA
    parser.feed(b"ok")
    assert parser.next_event() == Data(b"ok")
    assert parser.in_message and parser.head_complete
    assert parser.next_event() is END_OF_MESSAGE
    assert not parser.in_message and not parser.head_complete
    assert parser.next_event() is NEED_DATA


def test_no_body_head_complete_until_end_of_message() -> None:
    parser = RequestParser()
    parser.feed(b"GET / HTTP/1.1\r\n" + H + b"\r\n")
    assert isinstance(parser.next_event(), RequestHead)
    assert parser.head_complete and parser.in_message
    assert parser.next_event() is END_OF_MESSAGE
    assert not parser.head_complete and not parser.in_message


def test_buffered_and_trailing_data() -> None:
    parser = RequestParser()
    upgrade = b"GET /ws HTTP/1.1\r\n" + H + b"Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    frames = b"\x81\x85abcd\x01\x02\x03\x04\x05"
    parser.feed(upgrade + frames)
    assert parser.buffered == len(upgrade) + len(frames)
    assert isinstance(parser.next_event(), RequestHead)
    assert parser.next_event() is END_OF_MESSAGE
    assert parser.buffered == len(frames)
    assert parser.trailing_data == frames


def test_feed_accepts_bytearray_and_memoryview() -> None:
    parser = RequestParser()
    parser.feed(bytearray(b"GET / HTTP/1.1\r\n"))
    parser.feed(memoryview(b"Host: x\r\n\r\n"))
    head = parser.next_event()
    assert isinstance(head, RequestHead)
    assert type(head.target) is bytes and type(head.headers[0][1]) is bytes


def test_empty_feed_is_ignored() -> None:
    parser = RequestParser()
    parser.feed(b"")
    assert parser.next_event() is NEED_DATA
    assert parser.buffered == 0


def test_set_limits_applies_to_next_request() -> None:
    parser = RequestParser()
    parser.feed(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 100\r\n\r\n")
    assert isinstance(parser.next_event(), RequestHead)
    parser.set_limits(max_body_bytes=10, max_line_bytes=32)
    parser.feed(b"x" * 100)  # the current body was accepted under the old limit
    assert parser.next_event() == Data(b"x" * 100)
    assert parser.next_event() is END_OF_MESSAGE
    parser.feed(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 11\r\n\r\n")
    with pytest.raises(RemoteProtocolError) as info:
        parser.next_event()
    assert info.value.status_hint == 413


def test_set_limits_between_requests_applies_at_once() -> None:
    parser = RequestParser()
    parser.set_limits(max_line_bytes=16)
    parser.feed(b"GET /" + b"a" * 20 + b" HTTP/1.1\r\n" + H + b"\r\n")
    with pytest.raises(RemoteProtocolError) as info:
        parser.next_event()
    assert info.value.status_hint == 414


def test_request_head_get() -> None:
    (head, _) = parse(b"GET / HTTP/1.1\r\n" + H + b"Accept: a\r\nACCEPT: b\r\n\r\n")
    assert head.get(b"accept") == b"a"
    assert head.get(b"missing") is None
    assert head.get(b"missing", b"d") == b"d"
    assert head.get_all(b"accept") == [b"a", b"b"]
    assert head.get_all(b"missing") == []
    assert "RequestHead(" in repr(head)


def test_odd_header_name_casing_is_validated_and_lowered() -> None:
    (head, _) = parse(b"GET / HTTP/1.1\r\nhOsT: x\r\nX-SoMe-NaMe: v\r\n\r\n")
    assert head.headers == [(b"host", b"x"), (b"x-some-name", b"v")]
    # The second time the cached spelling is used; the result is the same.
    (again, _) = parse(b"GET / HTTP/1.1\r\nhOsT: x\r\nX-SoMe-NaMe: v\r\n\r\n")
    assert again.headers == head.headers


def test_events_reprs_and_equality() -> None:
    assert repr(NEED_DATA) == "NEED_DATA"
    assert Data(b"a") == Data(b"a") and Data(b"a") != Data(b"b")
    assert repr(Data(b"a")) == "Data(b'a')"
    assert END_OF_MESSAGE == EndOfMessage([]) == EndOfMessage()
    assert EndOfMessage([(b"a", b"b")]) != END_OF_MESSAGE
    error = RemoteProtocolError("obs-fold")
    assert (error.reason, error.status_hint, error.head) == ("obs-fold", 400, None)
    assert "obs-fold" in str(error) and "obs-fold" in repr(error)


# -- the header-block cache ------------------------------------------------------------------


def test_cached_block_gives_fresh_header_lists() -> None:
    data = b"GET / HTTP/1.1\r\nHost: x\r\nX-Cache-Test: 1\r\n\r\n"
    (first, _) = parse(data)
    first.headers.append((b"x-mutated", b"yes"))
    (second, _) = parse(data)
    assert second.headers == [(b"host", b"x"), (b"x-cache-test", b"1")]


def test_cached_block_rechecks_the_field_limit() -> None:
    data = b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nX-B: 2\r\nX-C: 3\r\n\r\n"
    assert len(parse(data)) == 2  # cached under the default limit
    error = parse_error(data, max_header_fields=3)
    assert (error.status_hint, error.reason) == (431, "too-many-header-fields")


def test_cached_block_still_raises_framing_errors() -> None:
    block = H + b"Transfer-Encoding: chunked\r\n\r\n"
    assert isinstance(parse(b"POST / HTTP/1.1\r\n" + block)[0], RequestHead)
    assert parse_error(b"POST / HTTP/1.0\r\n" + block).reason == "transfer-encoding-in-http10"
    smuggle = (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    for _ in range(2):
        assert parse_error(smuggle).reason == "content-length-and-transfer-encoding"


def test_cached_trailers_recheck_the_field_limit() -> None:
    body = b"0\r\nX-T1: a\r\nX-T2: b\r\n\r\n"
    request = b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n" + body
    assert message(request)[2] == ((b"x-t1", b"a"), (b"x-t2", b"b"))
    error = parse_error(request, max_header_fields=3)  # 2 head fields + 2 trailers
    assert (error.status_hint, error.reason) == (431, "too-many-header-fields")


def test_block_cache_is_bounded() -> None:
    for i in range(2000):
        parse(b"GET / HTTP/1.1\r\nHost: x\r\nX-Unique: %d\r\n\r\n" % i)
    assert 0 < len(BLOCK_CACHE) <= 512
    big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 3000 + b"\r\n\r\n"
    parse(big)
    assert all(len(key) <= 2048 for key in BLOCK_CACHE)


def test_partial_request_line_of_a_refused_head() -> None:
    """A head refused for a field still says what was asked; a stream refused as no HTTP at
    all (a TLS hello on the plain port) says nothing rather than binary garbage."""
    parser = RequestParser()
    parser.feed(b"GET /a?b HTTP/1.1\r\nBad Field: v\r\n\r\n")
    with pytest.raises(RemoteProtocolError):
        parser.next_event()
    assert parser.partial_request_line() == (b"GET", b"/a?b")
    parser = RequestParser()
    parser.feed(b"\x16\x03\x01 \x02\x00 \x01\xfc\r\n")
    with pytest.raises(RemoteProtocolError):
        parser.next_event()
    assert parser.partial_request_line() is None


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        (b"Content-Length: 5\r\nTransfer-Encoding: chunked",
         "content-length-and-transfer-encoding"),
        (b"Content-Length: abc", "invalid-content-length"),
        (b"Content-Length: 5\r\nContent-Length: 6", "conflicting-content-length"),
        (b"Content-Length: " + b"9" * 40, "content-length-too-long"),
        (b"Transfer-Encoding: gzip", "unsupported-transfer-coding"),
        (b"Transfer-Encoding: chunked, chunked", "chunked-twice"),
    ],
)
def test_partial_request_line_of_a_head_refused_for_its_framing(fields: bytes, reason: str) -> None:
    """A head refused for its framing fields says what was asked, not what its body holds
    (the access log showed "helloGET /smuggled" for a bad Content-Length with a body)."""
    parser = RequestParser()
    parser.feed(b"POST /upload?x HTTP/1.1\r\nHost: a\r\n" + fields + b"\r\n\r\n"
                b"helloGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n")
    with pytest.raises(RemoteProtocolError) as caught:
        parser.next_event()
    assert caught.value.reason == reason
    assert parser.partial_request_line() == (b"POST", b"/upload?x")
