"""Response framing: the serializer, not the app, decides Content-Length, chunked or close.

Strategy
--------
`frame_response` takes what the app said (status, header fields, the body's length when it
is known) and what the exchange allows (HEAD, keep-alive, HTTP/1.0) and returns the framing
lines the connection writes plus the app's header block, cleaned, as h11's
`_clean_up_response_headers_for_sending` does:

- An app `Content-Length` is used (a streamed body of announced length goes out unchunked)
  or checked against the body; it is never sent twice. A body that disagrees raises
  `FramingError` -- a bug of the app, which the connection answers with a 500, instead of a
  stream the client would misread.
- Hop-by-hop fields (RFC 9110 7.6.1: Connection, Keep-Alive, Proxy-Connection, TE,
  Transfer-Encoding, Upgrade) are the connection's business: an app's are dropped, except
  that `Connection: close` is honoured (the connection then closes after the response) and
  a 101 keeps its `Upgrade`.
- `Date`, `Server` and `X-Request-ID` are the connection's too (it writes its own in every
  response): an app's copy is dropped rather than sent as a second field line -- the way
  nginx hides an upstream's Date and Server. Two Date fields are invalid (RFC 9110 5.3), and
  the request id a client sees must be the one in the access log.
- No-body statuses are enforced here: 1xx and 204 carry no Content-Length or
  Transfer-Encoding (RFC 9110 8.6, RFC 9112 6.1); 304 and HEAD send no body but may keep the
  length the GET would have had (RFC 9110 8.6); a 205 sends no content (RFC 9110 15.3.6)
  and says so with `Content-Length: 0`, since a client reads a 205's body by its framing
  like any other (RFC 9112 6.3).

The common case -- a handful of ordinary fields, a bytes body -- costs one dict lookup: the
serialized block of a header list made only of ordinary fields is remembered (bounded), and
names seen before in that exact spelling are remembered as ordinary.
"""

from __future__ import annotations

from reactor.proto.errors import LocalProtocolError
from reactor.proto.serialize import header_lines

__all__ = ["CLOSE_DELIMITED", "FramingError", "frame_response"]

CLOSE_DELIMITED = -1
"""`length` of a body whose end is the connection's close (HTTP/1.0 stream, say)."""

_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te",
                         b"transfer-encoding", b"upgrade"})
# Fields the connection itself writes in every response (conn/exchange.py).
_SERVER_OWNED = frozenset({b"date", b"server", b"x-request-id"})
_ORDINARY: set[bytes] = set()
_ORDINARY_MAX = 1024
# Handlers answer with the same few header lists again and again (a content type, a Vary):
# their serialized, checked block is remembered, keyed by the fields themselves.
_BLOCKS: dict[tuple[tuple[bytes, bytes], ...], bytes] = {}
_BLOCKS_MAX = 512
_CLOSE = b"Connection: close\r\n"
_KEEP_ALIVE = b"Connection: keep-alive\r\n"
_UPGRADE = b"Connection: upgrade\r\n"
_CHUNKED = b"Transfer-Encoding: chunked\r\n"


class FramingError(LocalProtocolError):
    """The app's framing fields contradict its body (a bug in the app, answered with 500)."""


Framing = tuple[bytes, bytes, int, bool, bool]
"""(framing lines, app header block, body length or CLOSE_DELIMITED, chunked, keep_alive)."""


def frame_response(status: int, headers: list[tuple[bytes, bytes]], body_length: int | None,
                   head_request: bool, keep_alive: bool, http10: bool) -> Framing:
    """Decide the framing of one response.

    `body_length` is the length of the body the app gave, or None when it is produced as it
    is sent (its length unknown). Returns the framing lines (Content-Length or
    Transfer-Encoding, Connection), the cleaned app fields as one block, the number of body
    bytes that will follow (0 when none is sent; CLOSE_DELIMITED when the close ends it),
    whether they are chunked, and whether the connection stays open afterwards.
    Raises FramingError (a LocalProtocolError) when the app's fields contradict the body.
    """
    app_length: int | None = None
    key = tuple(headers)
    block = _BLOCKS.get(key)
    if block is None:
        kept = headers
        for name, _value in headers:
            if name not in _ORDINARY and not _is_ordinary(name):
                if status == 426 and any(n.lower() == b"upgrade" for n, _ in headers):
                    return _offering_upgrade(headers, body_length, head_request, keep_alive,
                                             http10)
                kept, app_length, keep_alive = _clean(headers, status, keep_alive)
                break
        block = header_lines(kept)
        if kept is headers and len(_BLOCKS) < _BLOCKS_MAX:
            _BLOCKS[key] = block  # only ordinary fields: the block is all there is to know
    if (body_length is not None and app_length is None and status >= 200
            and status != 204 and status != 304 and status != 205
            and not head_request):  # the common case
        if keep_alive and not http10:
            return b"Content-Length: %d\r\n" % body_length, block, body_length, False, True
        return (b"Content-Length: %d\r\n" % body_length + _connection(keep_alive, http10),
                block, body_length, False, keep_alive)

    if status < 200 or status == 204:
        # RFC 9112 6.1: no Content-Length or Transfer-Encoding in 1xx and 204.
        if status == 101:
            return _UPGRADE, block, 0, False, True
        # a 204 says whether the connection stays, as every other answer (RFC 9112 9.6)
        return _connection(keep_alive, http10), block, 0, False, keep_alive
    if status == 205:
        # RFC 9110 15.3.6: a server MUST NOT generate content in a 205. Whatever the app gave
        # is dropped, as for a 204, and the empty body is framed: a client reads a 205 by
        # its framing like any other response (RFC 9112 6.3).
        return b"Content-Length: 0\r\n" + _connection(keep_alive, http10), block, 0, False, \
            keep_alive
    if status == 304 or head_request:
        # No body; the length is what a GET would have had (RFC 9110 8.6, 9.3.2). A 304's
        # own (empty) body says nothing about that, so only the app's field counts there.
        length = app_length if app_length is not None or status == 304 else body_length
        lines = b"Content-Length: %d\r\n" % length if length is not None else b""
        if length is None and not http10 and status != 304:
            lines = _CHUNKED  # what the GET would say: the client may rely on it
        return lines + _connection(keep_alive, http10), block, 0, False, keep_alive
    if body_length is not None:
        if app_length != body_length:
            raise FramingError(f"Content-Length {app_length} set by the app, but its body"
                               f" is {body_length} bytes")
        return (b"Content-Length: %d\r\n" % body_length + _connection(keep_alive, http10),
                block, body_length, False, keep_alive)
    if app_length is not None:  # a stream of announced length: sent as it is, not chunked
        return (b"Content-Length: %d\r\n" % app_length + _connection(keep_alive, http10),
                block, app_length, False, keep_alive)
    if not http10:
        # Chunked even when the connection closes after it (the client's or the app's
        # `Connection: close`): the last chunk is how the client tells the whole body from
        # one cut short (a stream that failed half-way), which a close cannot say. h11,
        # gunicorn and nginx frame it so too.
        return (_CHUNKED if keep_alive else _CHUNKED + _CLOSE), block, 0, True, keep_alive
    # HTTP/1.0 cannot read chunks: the close tells where the body ends (RFC 9112 6.3).
    return _CLOSE, block, CLOSE_DELIMITED, False, False


def _offering_upgrade(headers: list[tuple[bytes, bytes]], body_length: int | None,
                      head_request: bool, keep_alive: bool, http10: bool) -> Framing:
    """A 426 framed as any response, plus the app's Upgrade fields: it MUST name the
    protocols it requires there (RFC 9110 15.5.22), and a sender of Upgrade lists "upgrade"
    in Connection (7.8) so that no intermediary forwards it."""
    offers = [(name, value) for name, value in headers if name.lower() == b"upgrade"]
    rest = [(name, value) for name, value in headers if name.lower() != b"upgrade"]
    lines, block, length, chunked, keep_alive = frame_response(
        426, rest, body_length, head_request, keep_alive, http10)
    for connection in (_CLOSE, _KEEP_ALIVE):
        if connection in lines:
            lines = lines.replace(connection, connection[:-2] + b", upgrade\r\n")
            break
    else:
        lines += _UPGRADE
    return lines, block + header_lines(offers), length, chunked, keep_alive


def _connection(keep_alive: bool, http10: bool) -> bytes:
    if not keep_alive:
        return _CLOSE
    return _KEEP_ALIVE if http10 else b""


def _is_ordinary(name: bytes) -> bool:
    """A field the connection passes through as it is (remembered when it is)."""
    lower = name.lower()
    if lower in _HOP_BY_HOP or lower == b"content-length" or lower in _SERVER_OWNED:
        return False
    if len(_ORDINARY) < _ORDINARY_MAX:
        _ORDINARY.add(name)
    return True


def _clean(headers: list[tuple[bytes, bytes]], status: int, keep_alive: bool
           ) -> tuple[list[tuple[bytes, bytes]], int | None, bool]:
    """The app's fields without the framing ones; the app's length; keep-alive after it."""
    kept: list[tuple[bytes, bytes]] = []
    app_length: int | None = None
    for name, value in headers:
        lower = name.lower()
        if lower == b"content-length":
            length = _parse_length(value)
            if app_length is not None and length != app_length:
                raise FramingError(f"two different Content-Length fields: {app_length},"
                                   f" {length}")
            app_length = length
        elif lower == b"connection":
            if b"close" in [token.strip() for token in value.lower().split(b",")]:
                keep_alive = False
        elif ((lower == b"upgrade" and status == 101) or lower not in _HOP_BY_HOP) \
                and lower not in _SERVER_OWNED:
            kept.append((name, value))
    return kept, app_length, keep_alive


def _parse_length(value: bytes) -> int:
    # RFC 9110 8.6: Content-Length = 1*DIGIT
    value = value.strip()
    if not value.isdigit() or not value.isascii():
        raise FramingError(f"invalid Content-Length {value!r} set by the app")
    return int(value)
