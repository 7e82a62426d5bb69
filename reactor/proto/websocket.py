"""WebSocket (RFC 6455), sans-IO: the opening handshake check, frames, messages, the close.

Strategy: `WebSocketParser.receive(data)` turns bytes into events (`Message`, `Ping`, `Pong`,
`Close`, or one `Failure` carrying the close code to fail the connection with); the `encode_*`
functions turn what we send into bytes. A frame's payload is consumed as it arrives, so a
text message is validated as UTF-8 piece by piece and fails on the first invalid byte even
in the middle of a frame (RFC 6455 8.1), and a message over the size limit is refused from
its frame header, before its payload is read. Control frames may arrive between the
fragments of a message (5.4); they are at most 125 bytes and never fragmented (5.5).
Nothing here knows about sockets, threads or timers.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
from collections.abc import Callable, Iterable

from reactor.proto.deflate import Deflate, DeflateConfig, DeflateError, DeflateParams, negotiate

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_FIN = 0x80
_RSV1 = 0x40
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# Close codes (RFC 6455 7.4.1).
NORMAL, GOING_AWAY, PROTOCOL_ERROR, UNSUPPORTED = 1000, 1001, 1002, 1003
NO_STATUS, ABNORMAL, INVALID_DATA, POLICY, TOO_BIG = 1005, 1006, 1007, 1008, 1009
INTERNAL_ERROR = 1011


def valid_close_code(code: int) -> bool:
    """A code a peer may put in a Close frame (7.4.1, 7.4.2; 1012-1014 are registered)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


# ---- the opening handshake (4.2.1, 4.2.2) ------------------------------------------------------


class HandshakeError(Exception):
    """A request we refuse to upgrade: answer `status` with `reason` (and `headers`)."""

    def __init__(self, status: int, reason: str,
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or []


class Handshake:
    """A valid upgrade request: what the 101 answer needs."""

    __slots__ = ("accept", "deflate", "extensions", "origin", "protocols")

    def __init__(self, accept: bytes, extensions: list[bytes], protocols: list[bytes],
                 origin: bytes | None) -> None:
        self.accept = accept
        self.extensions = extensions  # Sec-WebSocket-Extensions field values
        self.protocols = protocols  # offered subprotocols, in order
        self.origin = origin
        self.deflate: DeflateParams | None = None

    def response_headers(self, protocol: bytes | None = None) -> list[tuple[bytes, bytes]]:
        """The 101's fields (the connection adds `Connection: upgrade`)."""
        fields = [(b"Upgrade", b"websocket"), (b"Sec-WebSocket-Accept", self.accept)]
        if self.deflate is not None:
            fields.append((b"Sec-WebSocket-Extensions", self.deflate.response_value()))
        if protocol is not None:
            fields.append((b"Sec-WebSocket-Protocol", protocol))
        return fields


def accept_key(key: bytes) -> bytes:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (4.2.2 step 5.4)."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


# A 426 names what to upgrade to (RFC 9110 15.5.22) and the versions we speak (6455 4.4).
_UPGRADE_TO_13 = [(b"Upgrade", b"websocket"), (b"Sec-WebSocket-Version", b"13")]


def _tokens(values: list[bytes]) -> set[bytes]:
    return {token.strip().lower() for value in values for token in value.split(b",")}


def check_handshake(method: str, version: str, headers: Iterable[tuple[bytes, bytes]], *,
                    deflate: DeflateConfig | None = None) -> Handshake:
    """Validate an upgrade request (lower-case field names); HandshakeError says why not."""
    fields: dict[bytes, list[bytes]] = {}
    for name, value in headers:
        fields.setdefault(name, []).append(value)
    if b"websocket" not in _tokens(fields.get(b"upgrade", [])):
        raise HandshakeError(426, "websocket-upgrade-required", _UPGRADE_TO_13)
    if b"upgrade" not in _tokens(fields.get(b"connection", [])):
        raise HandshakeError(400, "connection-upgrade-missing")
    if method != "GET":
        raise HandshakeError(400, "websocket-needs-get")
    if version != "1.1":
        raise HandshakeError(400, "websocket-needs-http/1.1")
    versions = fields.get(b"sec-websocket-version", [])
    if not versions:
        raise HandshakeError(400, "websocket-version-missing")
    if versions != [b"13"]:
        # 4.4: answer the versions we speak
        raise HandshakeError(426, "websocket-version-unsupported", _UPGRADE_TO_13)
    keys = fields.get(b"sec-websocket-key", [])
    if len(keys) != 1:
        raise HandshakeError(400, "websocket-key-missing")
    key = keys[0].strip()
    try:
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 16:  # 4.1: a base64-encoded 16-byte nonce
        raise HandshakeError(400, "websocket-key-invalid")
    protocols = [p.strip() for value in fields.get(b"sec-websocket-protocol", [])
                 for p in value.split(b",") if p.strip()]
    origins = fields.get(b"origin")
    handshake = Handshake(accept_key(key), fields.get(b"sec-websocket-extensions", []),
                          protocols, origins[0] if origins else None)
    if deflate is not None and handshake.extensions:
        handshake.deflate = negotiate(handshake.extensions, deflate)
    return handshake


# ---- events ------------------------------------------------------------------------------------


class Message:
    """A whole data message: `str` for text, `bytes` for binary."""

    __slots__ = ("data", "wire_bytes")

    def __init__(self, data: str | bytes, wire_bytes: int) -> None:
        self.data = data
        self.wire_bytes = wire_bytes  # payload bytes as received (compressed, if so)

    def __repr__(self) -> str:
        return f"Message({self.data!r})"


class Ping:
    __slots__ = ("payload",)

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def __repr__(self) -> str:
        return f"Ping({self.payload!r})"


class Pong:
    __slots__ = ("payload",)

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def __repr__(self) -> str:
        return f"Pong({self.payload!r})"


class Close:
    """The peer's Close frame: `code` (1005 when it carried none) and reason."""

    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason

    def __repr__(self) -> str:
        return f"Close({self.code}, {self.reason!r})"


class Failure:
    """The peer broke the protocol: fail the connection with Close `code` (7.1.7)."""

    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason

    def __repr__(self) -> str:
        return f"Failure({self.code}, {self.reason!r})"


Event = Message | Ping | Pong | Close | Failure


class _Fail(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


# ---- masking and encoding ----------------------------------------------------------------------


def apply_mask(data: bytes, mask: bytes, offset: int = 0) -> bytes:
    """XOR `data` with the 4-byte `mask`, starting at mask byte `offset` (5.3).

    One big-integer XOR: linear, and far faster in CPython than a per-byte loop.
    """
    size = len(data)
    if not size:
        return b""
    if offset:
        mask = mask[offset:] + mask[:offset]
    key = (mask * ((size >> 2) + 1))[:size]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")


def frame_head(opcode: int, length: int, *, fin: bool = True, rsv1: bool = False,
               mask: bytes | None = None) -> bytes:
    first = (_FIN if fin else 0) | (_RSV1 if rsv1 else 0) | opcode
    bit = 0x80 if mask is not None else 0
    if length < 126:
        head = bytes((first, bit | length))
    elif length < 0x10000:
        head = bytes((first, bit | 126)) + length.to_bytes(2, "big")
    else:
        head = bytes((first, bit | 127)) + length.to_bytes(8, "big")
    return head + mask if mask is not None else head


def encode_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False,
                 mask: bytes | None = None) -> bytes:
    """One frame; with `mask` (a client's 4 random bytes) the payload is masked."""
    head = frame_head(opcode, len(payload), fin=fin, rsv1=rsv1, mask=mask)
    return head + (apply_mask(payload, mask) if mask is not None else payload)


def encode_close(code: int | None = NORMAL, reason: str = "", *,
                 mask: bytes | None = None) -> bytes:
    """A Close frame; `code` None sends an empty one. Raises ValueError (`close_payload`)."""
    if code is None:
        return encode_frame(OP_CLOSE, b"", mask=mask)
    return encode_frame(OP_CLOSE, close_payload(code, reason), mask=mask)


def close_payload(code: int, reason: str = "") -> bytes:
    """A Close frame's payload. ValueError for what no peer may accept: a code outside the
    ones a Close may carry (the same rule `parse_close` applies: 1004-1006, 1015 and the
    unassigned 1000-2999 are never sent) or a reason over 123 bytes of UTF-8."""
    if type(code) is not int or not valid_close_code(code):
        raise ValueError(f"close code {code!r} cannot be sent (1000-1003, 1007-1014,"
                         " 3000-4999)")
    payload = code.to_bytes(2, "big") + reason.encode("utf-8")
    if len(payload) > 125:
        raise ValueError("close reason longer than 123 bytes of UTF-8")
    return payload


def parse_close(payload: bytes) -> Close:
    """A Close frame's payload (5.5.1), validated; _Fail on a bad code or reason."""
    if not payload:
        return Close(NO_STATUS, "")
    if len(payload) == 1:
        raise _Fail(PROTOCOL_ERROR, "close-payload-1-byte")
    code = int.from_bytes(payload[:2], "big")
    if not valid_close_code(code):
        raise _Fail(PROTOCOL_ERROR, f"close-code-{code}-invalid")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise _Fail(INVALID_DATA, "close-reason-not-utf-8") from None
    return Close(code, reason)


# ---- the receiving side ------------------------------------------------------------------------

_HEAD, _PAYLOAD, _DONE = 0, 1, 2
_utf8_decoder = codecs.getincrementaldecoder("utf-8")


class WebSocketParser:
    """Frames in, events out, for one direction of one connection.

    The server's parser (the default) requires masked frames; a client's (`client=True`)
    refuses them. `max_message_bytes` limits a message's (inflated) size: beyond it the
    connection fails with 1009. After a `Close` or a `Failure` it ignores further input.
    """

    __slots__ = (
        "_compressed", "_control", "_data", "_decoder", "_deflate", "_fin", "_head", "_mask",
        "_masked", "_msg_op", "_offset", "_opcode", "_remaining", "_size",
        "_state", "_wire", "max_message_bytes",
    )

    def __init__(self, *, max_message_bytes: int = 1 << 20, deflate: Deflate | None = None,
                 client: bool = False) -> None:
        self.max_message_bytes = max_message_bytes
        self._deflate = deflate
        self._masked = not client
        self._state = _HEAD
        self._head = b""  # an incomplete frame header
        self._opcode = 0  # of the frame being read
        self._fin = True
        self._mask = b""
        self._offset = 0  # bytes of this frame's payload read so far (for the mask phase)
        self._remaining = 0
        self._control: list[bytes] = []
        self._msg_op = 0  # OP_TEXT/OP_BINARY while a message is in progress, else 0
        self._compressed = False
        # the message so far: its first piece, then (fragments) one growing bytearray -- not
        # a list of pieces, which costs ~40 bytes per piece: 1-byte frames x50 the limit
        self._data: bytes | bytearray = b""
        self._decoder: codecs.IncrementalDecoder | None = None
        self._size = 0  # message bytes so far (inflated)
        self._wire = 0  # message payload bytes so far, as received

    @property
    def closed(self) -> bool:
        """True once a Close or a Failure was returned."""
        return self._state == _DONE

    def receive(self, data: bytes) -> list[Event]:
        """Parse `data` (any split of the stream); return the events it completes."""
        events: list[Event] = []
        if self._state == _DONE:
            return events
        try:
            self._receive(data, events)
        except _Fail as fail:
            self._state = _DONE
            self._data = b""
            if self._deflate is not None:
                self._deflate.reset_inflate()
            events.append(Failure(fail.code, fail.reason))
        return events

    def _receive(self, data: bytes, events: list[Event]) -> None:
        pos = 0
        end = len(data)
        while pos < end or (self._state == _PAYLOAD and self._remaining == 0):
            if self._state == _HEAD:
                if self._head:
                    data = self._head + data[pos:]
                    self._head = b""
                    pos, end = 0, len(data)
                used = self._read_head(data, pos, end)
                if used == 0:
                    self._head = data[pos:]
                    return
                pos += used
            elif self._state == _PAYLOAD:
                take = min(self._remaining, end - pos)
                chunk = data[pos:pos + take] if take != end or pos else data
                pos += take
                self._payload(chunk, events)
                if self._state == _DONE:
                    return
            else:
                return

    def _read_head(self, data: bytes, pos: int, end: int) -> int:
        """Parse a frame header at `pos`: the bytes used, or 0 when it is incomplete."""
        if end - pos < 2:
            return 0
        first, second = data[pos], data[pos + 1]
        length = second & 0x7F
        size = 2
        if length == 126:
            size = 4
        elif length == 127:
            size = 10
        if (second & 0x80) != 0:
            size += 4
        if end - pos < size:
            return 0
        if length == 126:
            length = int.from_bytes(data[pos + 2:pos + 4], "big")
        elif length == 127:
            length = int.from_bytes(data[pos + 2:pos + 10], "big")
            if length >> 63:
                raise _Fail(PROTOCOL_ERROR, "frame-length-msb-set")
        masked = (second & 0x80) != 0
        if masked != self._masked:
            raise _Fail(PROTOCOL_ERROR, "frame-unmasked" if self._masked else "frame-masked")
        self._mask = data[pos + size - 4:pos + size] if masked else b""
        self._start_frame(first, length)
        return size

    def _start_frame(self, first: int, length: int) -> None:
        """Check a frame header against the message state (5.2, 5.4, 5.5)."""
        opcode = first & 0x0F
        fin = (first & _FIN) != 0
        rsv1 = (first & _RSV1) != 0
        if first & 0x30:
            raise _Fail(PROTOCOL_ERROR, "frame-rsv-bits-set")
        if opcode >= 0x8:
            if opcode > OP_PONG:
                raise _Fail(PROTOCOL_ERROR, f"opcode-{opcode}-reserved")
            if not fin:
                raise _Fail(PROTOCOL_ERROR, "control-frame-fragmented")
            if length > 125:
                raise _Fail(PROTOCOL_ERROR, "control-frame-too-long")
            if rsv1:
                raise _Fail(PROTOCOL_ERROR, "control-frame-rsv1")
        elif opcode == OP_CONT:
            if not self._msg_op:
                raise _Fail(PROTOCOL_ERROR, "continuation-without-message")
            if rsv1:
                raise _Fail(PROTOCOL_ERROR, "continuation-rsv1")
        elif opcode in (OP_TEXT, OP_BINARY):
            if self._msg_op:
                raise _Fail(PROTOCOL_ERROR, "message-interleaved")
            if rsv1 and self._deflate is None:
                raise _Fail(PROTOCOL_ERROR, "frame-rsv1-not-negotiated")
            self._msg_op = opcode
            self._compressed = rsv1
            self._size = self._wire = 0
            if opcode == OP_TEXT:
                self._decoder = None
        else:
            raise _Fail(PROTOCOL_ERROR, f"opcode-{opcode}-reserved")
        if opcode < 0x8:
            limit = self.max_message_bytes
            if self._compressed:
                # inflating is capped on its own; this bounds input that inflates to nothing
                if self._wire + length > limit + (limit >> 6) + 1024:
                    raise _Fail(TOO_BIG, "message-too-big")
            elif self._size + length > limit:
                raise _Fail(TOO_BIG, "message-too-big")  # refused before its payload is read
        self._opcode = opcode
        self._fin = fin
        self._remaining = length
        self._offset = 0
        self._state = _PAYLOAD

    def _payload(self, chunk: bytes, events: list[Event]) -> None:
        """A piece of the current frame's payload (maybe empty, at the frame's end)."""
        if self._mask:
            chunk = apply_mask(chunk, self._mask, self._offset & 3)
        self._offset += len(chunk)
        self._remaining -= len(chunk)
        done = self._remaining == 0
        if self._opcode >= 0x8:
            self._control.append(chunk)
            if done:
                self._state = _HEAD
                payload = b"".join(self._control)
                self._control = []
                self._control_frame(payload, events)
            return
        self._data_piece(chunk, done and self._fin)
        if done:
            self._state = _HEAD
            if self._fin:
                self._message_done(events)

    def _data_piece(self, chunk: bytes, last: bool) -> None:
        self._wire += len(chunk)
        if self._compressed:
            if not chunk and not last:
                return
            deflate = self._deflate
            assert deflate is not None  # RSV1 is refused unless negotiated
            try:
                chunk = deflate.inflate(chunk, self.max_message_bytes - self._size, end=last)
            except DeflateError as exc:
                raise _Fail(exc.code, exc.reason) from None
        elif not chunk:
            return
        self._size += len(chunk)
        data = self._data
        if self._msg_op == OP_TEXT and not (last and not data and self._decoder is None):
            self._check_text(chunk, last)
        if not data:
            self._data = chunk
        elif isinstance(data, bytearray):
            data += chunk
        else:  # a second piece: from here on, one buffer
            buffer = bytearray(data)
            buffer += chunk
            self._data = buffer

    def _check_text(self, chunk: bytes, last: bool) -> None:
        """Validate a piece of a text message, failing on its first invalid byte (8.1)."""
        decoder = self._decoder
        if decoder is None:
            decoder = self._decoder = _utf8_decoder()
        try:
            decoder.decode(chunk, last)
        except UnicodeDecodeError:
            raise _Fail(INVALID_DATA, "text-not-utf-8") from None
        if not last:
            pending = decoder.getstate()[0]
            # CPython waits for a third byte before refusing a UTF-16 surrogate (ED A0..BF)
            if len(pending) >= 2 and pending[0] == 0xED and pending[1] >= 0xA0:
                raise _Fail(INVALID_DATA, "text-not-utf-8")

    def _message_done(self, events: list[Event]) -> None:
        payload = self._data
        self._data = b""
        opcode, self._msg_op = self._msg_op, 0
        if opcode == OP_TEXT:
            if self._decoder is not None:
                self._decoder = None
                text = payload.decode("utf-8")  # validated piece by piece already
            else:
                try:
                    text = payload.decode("utf-8")
                except UnicodeDecodeError:
                    raise _Fail(INVALID_DATA, "text-not-utf-8") from None
            events.append(Message(text, self._wire))
        else:
            events.append(Message(payload if type(payload) is bytes else bytes(payload),
                                  self._wire))

    def _control_frame(self, payload: bytes, events: list[Event]) -> None:
        opcode = self._opcode
        if opcode == OP_PING:
            events.append(Ping(payload))
        elif opcode == OP_PONG:
            events.append(Pong(payload))
        else:
            events.append(parse_close(payload))
            self._state = _DONE


# ---- the sending side --------------------------------------------------------------------------


class MessageEncoder:
    """Our messages as frames (server frames are unmasked; a client passes `mask_source`)."""

    __slots__ = ("_deflate", "_mask_source")

    def __init__(self, deflate: Deflate | None = None, *,
                 mask_source: Callable[[], bytes] | None = None) -> None:
        self._deflate = deflate
        self._mask_source = mask_source  # 4 random bytes per frame, for a client

    def _mask(self) -> bytes | None:
        return self._mask_source() if self._mask_source is not None else None

    def message(self, data: str | bytes, *, compress: bool = True) -> bytes:
        opcode, payload = message_payload(data)
        mask = self._mask()
        if compress and self._deflate is not None:
            return encode_frame(opcode, self._deflate.compress(payload), rsv1=True, mask=mask)
        return encode_frame(opcode, payload, mask=mask)

    def control(self, opcode: int, payload: bytes = b"") -> bytes:
        if len(payload) > 125:
            raise ValueError("control frame payload over 125 bytes")
        mask = self._mask()
        return encode_frame(opcode, payload, mask=mask)

    def close(self, code: int | None = NORMAL, reason: str = "") -> bytes:
        mask = self._mask()
        return encode_close(code, reason, mask=mask)


def plain_message(data: str | bytes) -> bytes:
    """An uncompressed server frame: valid for every connection, deflate or not (RFC 7692
    6: an uncompressed message has RSV1 clear), so a broadcast encodes it once."""
    return encode_frame(*message_payload(data))


def message_payload(data: str | bytes) -> tuple[int, bytes]:
    """(opcode, payload) of a message: str is text, bytes-like is binary. Anything else is
    the caller's bug (`bytes(5)` would be a message of five NULs): TypeError."""
    if isinstance(data, str):
        return OP_TEXT, data.encode("utf-8")
    if isinstance(data, bytes | bytearray | memoryview):
        return OP_BINARY, bytes(data)
    raise TypeError(f"a WebSocket message is str or bytes, not {type(data).__name__}")


__all__ = [
    "ABNORMAL", "GOING_AWAY", "INTERNAL_ERROR", "INVALID_DATA", "NORMAL", "NO_STATUS",
    "OP_BINARY", "OP_CLOSE", "OP_CONT", "OP_PING", "OP_PONG", "OP_TEXT", "POLICY",
    "PROTOCOL_ERROR", "TOO_BIG", "UNSUPPORTED", "Close", "Deflate", "DeflateConfig",
    "DeflateParams", "Event", "Failure", "Handshake", "HandshakeError", "Message",
    "MessageEncoder", "Ping", "Pong", "WebSocketParser", "accept_key", "apply_mask",
    "check_handshake", "close_payload", "encode_close", "encode_frame", "frame_head",
    "message_payload",
    "parse_close",
    "plain_message", "valid_close_code",
]
