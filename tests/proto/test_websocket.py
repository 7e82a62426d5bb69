"""WebSocket protocol (RFC 6455) and permessage-deflate (RFC 7692): handshake, frames,
messages, close codes, UTF-8 failing fast, size limits and the deflate bomb."""

from __future__ import annotations

import os
import tracemalloc
import zlib

import pytest

from reactor.proto.deflate import (
    Deflate,
    DeflateConfig,
    DeflateParams,
    negotiate,
    parse_extensions,
)
from reactor.proto.websocket import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Close,
    Failure,
    HandshakeError,
    Message,
    MessageEncoder,
    Ping,
    Pong,
    WebSocketParser,
    accept_key,
    apply_mask,
    check_handshake,
    close_payload,
    encode_close,
    encode_frame,
    parse_close,
    plain_message,
)

MASK = b"\x01\x02\x03\x04"
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


def frame(opcode: int, payload: bytes, **kw: object) -> bytes:
    return encode_frame(opcode, payload, mask=MASK, **kw)  # type: ignore[arg-type]


def upgrade_headers(**extra: bytes) -> list[tuple[bytes, bytes]]:
    fields = {b"host": b"x", b"upgrade": b"websocket", b"connection": b"keep-alive, Upgrade",
              b"sec-websocket-version": b"13", b"sec-websocket-key": KEY}
    for name, value in extra.items():
        key = name.replace("_", "-").encode()
        if value == b"":
            fields.pop(key, None)
        else:
            fields[key] = value
    return list(fields.items())


# ---- handshake ----------------------------------------------------------------------------


def test_accept_key_matches_rfc_example() -> None:
    assert accept_key(KEY) == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 1.3


def test_valid_handshake() -> None:
    handshake = check_handshake("GET", "1.1", upgrade_headers(
        sec_websocket_protocol=b"chat, superchat", origin=b"http://example.com"))
    assert handshake.accept == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert handshake.protocols == [b"chat", b"superchat"]
    assert handshake.origin == b"http://example.com"
    fields = dict(handshake.response_headers(b"chat"))
    assert fields[b"Upgrade"] == b"websocket"
    assert fields[b"Sec-WebSocket-Protocol"] == b"chat"
    assert b"Sec-WebSocket-Extensions" not in fields


@pytest.mark.parametrize(("method", "version", "extra", "status", "reason"), [
    ("GET", "1.1", {"upgrade": b""}, 426, "websocket-upgrade-required"),
    ("GET", "1.1", {"upgrade": b"h2c"}, 426, "websocket-upgrade-required"),
    ("GET", "1.1", {"connection": b"keep-alive"}, 400, "connection-upgrade-missing"),
    ("POST", "1.1", {}, 400, "websocket-needs-get"),
    ("GET", "1.0", {}, 400, "websocket-needs-http/1.1"),
    ("GET", "1.1", {"sec_websocket_version": b""}, 400, "websocket-version-missing"),
    ("GET", "1.1", {"sec_websocket_version": b"8"}, 426, "websocket-version-unsupported"),
    ("GET", "1.1", {"sec_websocket_key": b""}, 400, "websocket-key-missing"),
    ("GET", "1.1", {"sec_websocket_key": b"c2hvcnQ="}, 400, "websocket-key-invalid"),
    ("GET", "1.1", {"sec_websocket_key": b"not base64!!"}, 400, "websocket-key-invalid"),
])
def test_bad_handshakes(method: str, version: str, extra: dict[str, bytes], status: int,
                        reason: str) -> None:
    with pytest.raises(HandshakeError) as info:
        check_handshake(method, version, upgrade_headers(**extra))
    assert (info.value.status, info.value.reason) == (status, reason)
    if status == 426:
        assert (b"Sec-WebSocket-Version", b"13") in info.value.headers
        assert (b"Upgrade", b"websocket") in info.value.headers


# ---- permessage-deflate negotiation -----------------------------------------------------------


def test_parse_extensions() -> None:
    assert parse_extensions([b"permessage-deflate; client_max_window_bits, foo;a=\"1\""]) == [
        (b"permessage-deflate", [(b"client_max_window_bits", None)]), (b"foo", [(b"a", b"1")])]


@pytest.mark.parametrize(("offer", "answer"), [
    (b"permessage-deflate",
     b"permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
    (b"permessage-deflate; client_max_window_bits",
     b"permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
    (b"permessage-deflate; server_max_window_bits=9",
     b"permessage-deflate; server_no_context_takeover; client_no_context_takeover;"
     b" server_max_window_bits=9"),
    (b"permessage-deflate; client_max_window_bits=10",
     b"permessage-deflate; server_no_context_takeover; client_no_context_takeover;"
     b" client_max_window_bits=10"),
    # declined offers fall through to the next one
    (b"permessage-deflate; server_max_window_bits=8, permessage-deflate",
     b"permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
    (b"permessage-deflate; server_max_window_bits=16", None),
    (b"permessage-deflate; bogus", None),
    (b"permessage-deflate; server_no_context_takeover=1", None),
    # RFC 7692 7.1: a repeated parameter declines the offer; 7.1.2.1: no leading zeros
    (b"permessage-deflate; server_max_window_bits=10; server_max_window_bits=12", None),
    (b"permessage-deflate; server_no_context_takeover; server_no_context_takeover", None),
    (b"permessage-deflate; client_max_window_bits=10; client_max_window_bits=11", None),
    (b"permessage-deflate; Server_Max_Window_Bits=10; server_max_window_bits=10", None),
    (b"permessage-deflate; server_max_window_bits=09", None),
    (b"permessage-deflate; client_max_window_bits=09", None),
    (b"x-webkit-deflate-frame", None),
])
def test_negotiation(offer: bytes, answer: bytes | None) -> None:
    params = negotiate([offer], DeflateConfig())
    assert (params.response_value() if params is not None else None) == answer


def test_negotiation_with_context_takeover_allowed() -> None:
    config = DeflateConfig(server_no_context_takeover=False, client_no_context_takeover=False)
    params = negotiate([b"permessage-deflate; server_no_context_takeover"], config)
    assert params is not None
    assert params.response_value() == b"permessage-deflate; server_no_context_takeover"
    params = negotiate([b"permessage-deflate"], config)
    assert params is not None and params.response_value() == b"permessage-deflate"


def test_handshake_negotiates_deflate() -> None:
    handshake = check_handshake("GET", "1.1", upgrade_headers(
        sec_websocket_extensions=b"permessage-deflate; client_max_window_bits"),
        deflate=DeflateConfig())
    assert handshake.deflate is not None
    assert dict(handshake.response_headers())[b"Sec-WebSocket-Extensions"].startswith(
        b"permessage-deflate")


# ---- frames and messages ----------------------------------------------------------------------


def test_mask_round_trip_at_any_offset() -> None:
    data = os.urandom(1000)
    masked = apply_mask(data, MASK)
    assert apply_mask(masked, MASK) == data
    assert apply_mask(masked[:5], MASK) + apply_mask(masked[5:], MASK, 5 & 3) == data
    assert apply_mask(b"", MASK) == b""


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 200_000])
def test_length_encodings(size: int) -> None:
    payload = os.urandom(size)
    parser = WebSocketParser()
    [message] = parser.receive(frame(OP_BINARY, payload))
    assert isinstance(message, Message) and message.data == payload
    head = encode_frame(OP_BINARY, payload)[:2]
    assert head[1] == (size if size < 126 else 126 if size < 65536 else 127)


def test_fragments_with_interleaved_control_frames() -> None:
    stream = (frame(OP_TEXT, b"he", fin=False) + frame(OP_PING, b"p1")
              + frame(OP_CONT, "l\xe9".encode()[:2], fin=False) + frame(OP_PONG, b"")
              + frame(OP_CONT, "l\xe9".encode()[2:] + b"o"))
    events = WebSocketParser().receive(stream)
    assert [type(e) for e in events] == [Ping, Pong, Message]
    assert events[2].data == "hel\xe9o"  # type: ignore[union-attr]


def test_byte_at_a_time_equals_whole() -> None:
    stream = (frame(OP_TEXT, "κόσμε".encode()) + frame(OP_BINARY, b"x" * 300, fin=False)
              + frame(OP_CONT, b"y") + encode_close(1000, "bye", mask=MASK))
    parser = WebSocketParser()
    pieces = [e for byte in stream for e in parser.receive(bytes([byte]))]
    assert repr(pieces) == repr(WebSocketParser().receive(stream))
    assert isinstance(pieces[-1], Close) and pieces[-1].code == 1000


@pytest.mark.parametrize(("stream", "code", "reason"), [
    (encode_frame(OP_TEXT, b"x"), 1002, "frame-unmasked"),
    (bytes([0x80 | 0x20 | OP_TEXT]) + frame(OP_TEXT, b"x")[1:], 1002, "frame-rsv-bits-set"),
    (bytes([0x80 | 0x40 | OP_TEXT]) + frame(OP_TEXT, b"x")[1:], 1002,
     "frame-rsv1-not-negotiated"),
    (frame(3, b""), 1002, "opcode-3-reserved"),
    (frame(0xB, b""), 1002, "opcode-11-reserved"),
    (frame(OP_CONT, b"x"), 1002, "continuation-without-message"),
    (frame(OP_TEXT, b"a", fin=False) + frame(OP_TEXT, b"b"), 1002, "message-interleaved"),
    (frame(OP_PING, b"x", fin=False), 1002, "control-frame-fragmented"),
    (frame(OP_PING, b"x" * 126), 1002, "control-frame-too-long"),
    (bytes([0x82, 0xFF]) + (1 << 63).to_bytes(8, "big") + MASK, 1002, "frame-length-msb-set"),
    (frame(OP_TEXT, b"\xff"), 1007, "text-not-utf-8"),
    (frame(OP_CLOSE, b"\x03"), 1002, "close-payload-1-byte"),
    (frame(OP_CLOSE, (1005).to_bytes(2, "big")), 1002, "close-code-1005-invalid"),
    (frame(OP_CLOSE, (999).to_bytes(2, "big")), 1002, "close-code-999-invalid"),
    (frame(OP_CLOSE, (2000).to_bytes(2, "big")), 1002, "close-code-2000-invalid"),
    (frame(OP_CLOSE, (5000).to_bytes(2, "big")), 1002, "close-code-5000-invalid"),
    (frame(OP_CLOSE, b"\x03\xe8\xff"), 1007, "close-reason-not-utf-8"),
])
def test_protocol_errors(stream: bytes, code: int, reason: str | None) -> None:
    events = WebSocketParser().receive(stream)
    assert len(events) == 1 and isinstance(events[0], Failure)
    assert events[0].code == code
    if reason is not None:
        assert events[0].reason == reason


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1007, 1011, 1014, 3000, 4999])
def test_valid_close_codes(code: int) -> None:
    [event] = WebSocketParser().receive(frame(OP_CLOSE, code.to_bytes(2, "big") + b"ok"))
    assert isinstance(event, Close) and (event.code, event.reason) == (code, "ok")


def test_empty_close_reports_1005_and_input_after_close_is_ignored() -> None:
    parser = WebSocketParser()
    assert repr(parser.receive(frame(OP_CLOSE, b"") + frame(OP_TEXT, b"late"))) == \
        "[Close(1005, '')]"
    assert parser.closed and parser.receive(frame(OP_TEXT, b"x")) == []


def test_codes_never_sent() -> None:
    # what we send follows the rule we hold peers to (parse_close): no 1004-1006, 1015, no
    # unassigned 1016-2999, nothing outside 1000-4999
    for code in (1004, 1005, 1006, 1015, 1016, 2999, 999, 5000, True, "1000"):
        with pytest.raises(ValueError):
            encode_close(code)  # type: ignore[arg-type]
    for code in (1000, 1001, 1003, 1007, 1011, 1012, 1014, 3000, 4999):
        close = parse_close(close_payload(code, "r"))
        assert (close.code, close.reason) == (code, "r")
    with pytest.raises(ValueError, match="123 bytes"):
        close_payload(1000, "é" * 62)
    assert close_payload(1000, "é" * 61)  # 2 + 122 bytes
    assert encode_close(None) == b"\x88\x00"
    assert encode_close(1000, "bye") == b"\x88\x05\x03\xe8bye"


def test_invalid_utf8_fails_at_the_first_bad_byte_across_fragments() -> None:
    good = "κόσμε".encode()
    parser = WebSocketParser()
    assert parser.receive(frame(OP_TEXT, good, fin=False)) == []
    # \xf4\x90 can never start a valid sequence: fail without waiting for more
    [event] = parser.receive(frame(OP_CONT, b"\xf4\x90", fin=False))
    assert isinstance(event, Failure) and event.code == 1007


def test_invalid_utf8_fails_mid_frame() -> None:
    payload = "κόσμε".encode() + b"\xf4\x90\x80\x80edited"
    stream = frame(OP_TEXT, payload)
    parser = WebSocketParser()
    cut = 2 + 4 + len("κόσμε".encode()) + 2
    [event] = parser.receive(stream[:cut])  # the rest of the frame never arrives
    assert isinstance(event, Failure) and event.code == 1007


def test_surrogate_prefix_fails_early() -> None:
    parser = WebSocketParser()
    [event] = parser.receive(frame(OP_TEXT, b"a\xed\xa0", fin=False))
    assert isinstance(event, Failure) and event.code == 1007


def test_split_code_point_across_fragments_is_fine() -> None:
    euro = "€".encode()
    parser = WebSocketParser()
    events = parser.receive(frame(OP_TEXT, euro[:1], fin=False) + frame(OP_CONT, euro[1:2],
                            fin=False) + frame(OP_CONT, euro[2:]))
    assert repr(events) == "[Message('€')]"


def test_message_size_limit_from_the_header() -> None:
    parser = WebSocketParser(max_message_bytes=100)
    head = frame(OP_BINARY, b"x" * 101)[:8]  # header only: refused before the payload
    [event] = parser.receive(head)
    assert isinstance(event, Failure) and event.code == 1009
    parser = WebSocketParser(max_message_bytes=100)
    events = parser.receive(frame(OP_BINARY, b"x" * 60, fin=False) + frame(OP_CONT, b"y" * 41))
    assert isinstance(events[0], Failure) and events[0].code == 1009
    assert repr(WebSocketParser(max_message_bytes=100).receive(frame(OP_TEXT, b"z" * 100))) \
        == repr([Message("z" * 100, 100)])


@pytest.mark.parametrize("opcode", [OP_BINARY, OP_TEXT], ids=["binary", "text"])
def test_a_message_in_one_byte_fragments_takes_about_its_size_in_memory(opcode: int) -> None:
    """A message held as one Python object per fragment took ~40 bytes per payload byte:
    a peer sending 1 MiB in 1-byte frames (under the 1 MiB limit) cost the server ~50 MiB."""
    size = 32 << 10
    parser = WebSocketParser(max_message_bytes=size)
    read = frame(OP_CONT, b"x", fin=False) * 4096  # 4096 fragments per network read
    parser.receive(frame(opcode, b"", fin=False))
    tracemalloc.start()
    try:
        for _ in range(size // 4096 - 1):
            assert parser.receive(read) == []
        events = parser.receive(read[:-7] + frame(OP_CONT, b"x"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [len(e.data) for e in events] == [size]  # type: ignore[union-attr]
    assert peak < 4 * size


# ---- compression --------------------------------------------------------------------------


def deflate_pair(**params: bool) -> tuple[Deflate, MessageEncoder]:
    agreed = DeflateParams(**params)  # type: ignore[arg-type]
    client = Deflate(agreed, client=True)
    return Deflate(agreed), MessageEncoder(client, mask_source=lambda: MASK)


@pytest.mark.parametrize("takeover", [True, False])
def test_compressed_messages_round_trip(takeover: bool) -> None:
    server, client = deflate_pair(server_no_context_takeover=not takeover,
                                  client_no_context_takeover=not takeover)
    parser = WebSocketParser(deflate=server)
    datas: list[str | bytes] = ["hello " * 50, b"\x00" * 1000, "", b""]
    stream = b"".join(client.message(m) for m in datas)
    events = parser.receive(stream)
    assert [e.data for e in events] == ["hello " * 50, b"\x00" * 1000, "", b""]  # type: ignore[union-attr]
    assert server.holds_memory is takeover
    # a server frame the client can read back
    reply = MessageEncoder(server).message("back " * 20)
    assert reply[0] & 0x40
    client_parser = WebSocketParser(deflate=Deflate(DeflateParams(), client=True), client=True)
    assert client_parser.receive(reply)[0].data == "back " * 20  # type: ignore[union-attr]


def test_compressed_message_fragmented() -> None:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    data = compressor.compress(b"abc" * 1000) + compressor.flush(zlib.Z_SYNC_FLUSH)
    data = data[:-4]
    parser = WebSocketParser(deflate=Deflate(DeflateParams()))
    stream = (encode_frame(OP_BINARY, data[:5], fin=False, rsv1=True, mask=MASK)
              + frame(OP_PING, b"") + frame(OP_CONT, data[5:]))
    events = parser.receive(stream)
    assert isinstance(events[1], Message) and events[1].data == b"abc" * 1000


def test_deflate_bomb_fails_with_1009_without_inflating_it() -> None:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = compressor.compress(b"\x00" * (64 << 20)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert len(bomb) < 100_000
    server = Deflate(DeflateParams())
    parser = WebSocketParser(max_message_bytes=1 << 20, deflate=server)
    events = parser.receive(encode_frame(OP_BINARY, bomb[:-4], rsv1=True, mask=MASK))
    assert len(events) == 1 and isinstance(events[0], Failure) and events[0].code == 1009


def test_rsv1_on_continuation_and_control_frames() -> None:
    parser = WebSocketParser(deflate=Deflate(DeflateParams()))
    stream = (encode_frame(OP_BINARY, b"", fin=False, rsv1=True, mask=MASK)
              + encode_frame(OP_CONT, b"", rsv1=True, mask=MASK))
    [event] = parser.receive(stream)
    assert isinstance(event, Failure) and event.reason == "continuation-rsv1"
    parser = WebSocketParser(deflate=Deflate(DeflateParams()))
    [event] = parser.receive(encode_frame(OP_PING, b"", rsv1=True, mask=MASK))
    assert isinstance(event, Failure) and event.reason == "control-frame-rsv1"


def test_bad_compressed_data_fails_with_1007() -> None:
    parser = WebSocketParser(deflate=Deflate(DeflateParams()))
    [event] = parser.receive(encode_frame(OP_TEXT, b"\xff\xff\xff", rsv1=True, mask=MASK))
    assert isinstance(event, Failure) and event.code == 1007


def test_plain_message_and_client_parser() -> None:
    parser = WebSocketParser(client=True)
    events = parser.receive(plain_message("hi") + plain_message(b"\x01"))
    assert [e.data for e in events] == ["hi", b"\x01"]  # type: ignore[union-attr]
    [event] = WebSocketParser(client=True).receive(frame(OP_TEXT, b"x"))
    assert isinstance(event, Failure) and event.reason == "frame-masked"


@pytest.mark.parametrize("bad", [5, None, 1.5, ["a"], {"a": 1}])
def test_a_message_that_is_not_str_or_bytes_is_refused_not_sent_as_nuls(bad: object) -> None:
    for encode in (plain_message, MessageEncoder().message):
        with pytest.raises(TypeError, match="a WebSocket message is str or bytes"):
            encode(bad)  # type: ignore[arg-type]
    assert plain_message(bytearray(b"ab")) == plain_message(b"ab")  # bytes-like is binary
    assert plain_message(memoryview(b"ab")) == encode_frame(OP_BINARY, b"ab")
