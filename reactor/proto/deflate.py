"""permessage-deflate (RFC 7692): negotiation of the extension and per-message (de)compression.

Strategy: the server picks the first offer it can honour and answers with the parameters in
force. Memory per connection is what matters at thousands of sockets: with context takeover
off (the server default, for both directions) no zlib object outlives a message, so an idle
connection holds none. Inflating is capped by the caller's limit (`max_length`): a deflate
bomb is refused after producing at most limit + 1 bytes, never inflated whole.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

EXTENSION = b"permessage-deflate"
# RFC 7692 7.2.1: a message is compressed, then these four trailing bytes are removed.
_TAIL = b"\x00\x00\xff\xff"
_MIN_BITS = 9  # zlib refuses a raw-deflate window of 8 bits (256 bytes): decline such offers
_MAX_BITS = 15


class DeflateError(Exception):
    """Compressed data that does not inflate (1007), or inflates past the limit (1009)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class DeflateConfig:
    """What the server wants: its own and the client's context takeover, compression level."""

    __slots__ = ("client_no_context_takeover", "level", "mem_level",
                 "server_no_context_takeover")

    def __init__(self, *, server_no_context_takeover: bool = True,
                 client_no_context_takeover: bool = True, level: int = 6,
                 mem_level: int = 8) -> None:
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.level = level
        self.mem_level = mem_level


class DeflateParams:
    """The parameters agreed for one connection (RFC 7692 7.1)."""

    __slots__ = ("client_max_window_bits", "client_no_context_takeover",
                 "server_max_window_bits", "server_no_context_takeover")

    def __init__(self, *, server_no_context_takeover: bool = False,
                 client_no_context_takeover: bool = False, server_max_window_bits: int = 15,
                 client_max_window_bits: int = 15) -> None:
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits

    def response_value(self) -> bytes:
        """The `Sec-WebSocket-Extensions` value answering the offer."""
        parts = [EXTENSION]
        if self.server_no_context_takeover:
            parts.append(b"server_no_context_takeover")
        if self.client_no_context_takeover:
            parts.append(b"client_no_context_takeover")
        if self.server_max_window_bits != _MAX_BITS:
            parts.append(b"server_max_window_bits=%d" % self.server_max_window_bits)
        if self.client_max_window_bits != _MAX_BITS:
            parts.append(b"client_max_window_bits=%d" % self.client_max_window_bits)
        return b"; ".join(parts)


Params = list[tuple[bytes, bytes | None]]
"""An element's parameters in order, repeats kept: (name, value or None)."""


def parse_extensions(values: Iterable[bytes]) -> list[tuple[bytes, Params]]:
    """`Sec-WebSocket-Extensions` field values -> [(name, [(param, value or None)])]."""
    offers: list[tuple[bytes, Params]] = []
    for value in values:
        for element in value.split(b","):
            items = [item.strip() for item in element.split(b";")]
            if not items[0]:
                continue
            params: Params = []
            for item in items[1:]:
                key, eq, val = item.partition(b"=")
                params.append((key.strip().lower(), val.strip().strip(b'"') if eq else None))
            offers.append((items[0].lower(), params))
    return offers


def _window_bits(value: bytes | None) -> int | None:
    """A window-bits parameter value 8..15, else None (refuses the offer). RFC 7692
    7.1.2.1: a decimal integer "without leading zeros" (`09` is no value)."""
    if value is None or not value.isdigit() or len(value) > 2 or value[:1] == b"0":
        return None
    bits = int(value)
    return bits if 8 <= bits <= _MAX_BITS else None


def negotiate(values: Iterable[bytes], config: DeflateConfig) -> DeflateParams | None:
    """The parameters for the first permessage-deflate offer we accept, or None.

    RFC 7692 7.1: an offer with an unknown or repeated parameter, or a bad value, is
    declined (the next one may still be taken).
    """
    for name, params in parse_extensions(values):
        if name != EXTENSION:
            continue
        agreed = _accept_offer(params, config)
        if agreed is not None:
            return agreed
    return None


def _accept_offer(params: Params, config: DeflateConfig) -> DeflateParams | None:
    if len({key for key, _ in params}) != len(params):
        return None  # RFC 7692 7.1: a parameter given twice MUST be declined
    agreed = DeflateParams(server_no_context_takeover=config.server_no_context_takeover,
                           client_no_context_takeover=config.client_no_context_takeover)
    for key, value in params:
        if key == b"server_no_context_takeover":
            if value is not None:
                return None
            agreed.server_no_context_takeover = True
        elif key == b"client_no_context_takeover":
            if value is not None:
                return None
            agreed.client_no_context_takeover = True
        elif key == b"server_max_window_bits":
            bits = _window_bits(value)
            if bits is None or bits < _MIN_BITS:
                return None  # 8 bits: zlib cannot compress within it, so decline
            agreed.server_max_window_bits = bits
        elif key == b"client_max_window_bits":
            if value is None:
                continue  # the client may limit its window; we inflate any window
            bits = _window_bits(value)
            if bits is None:
                return None
            agreed.client_max_window_bits = bits
        else:
            return None
    return agreed


def negotiate_client(value: bytes) -> DeflateParams:
    """A client's view of the server's `Sec-WebSocket-Extensions` answer (its one element)."""
    agreed = DeflateParams()
    for name, pairs in parse_extensions([value]):
        params = dict(pairs)
        if name != EXTENSION:
            raise DeflateError(1010, f"unexpected extension {name!r}")
        agreed.server_no_context_takeover = b"server_no_context_takeover" in params
        agreed.client_no_context_takeover = b"client_no_context_takeover" in params
        agreed.server_max_window_bits = _window_bits(
            params.get(b"server_max_window_bits", b"15")) or _MAX_BITS
        agreed.client_max_window_bits = _window_bits(
            params.get(b"client_max_window_bits", b"15")) or _MAX_BITS
    return agreed


class Deflate:
    """The compression state of one connection (server side unless `client`)."""

    __slots__ = ("_compressor", "_decompressor", "_in_bits", "_in_no_takeover", "_level",
                 "_mem_level", "_out_bits", "_out_no_takeover")

    def __init__(self, params: DeflateParams, *, client: bool = False, level: int = 6,
                 mem_level: int = 8) -> None:
        if client:
            self._out_no_takeover = params.client_no_context_takeover
            self._in_no_takeover = params.server_no_context_takeover
            self._out_bits = params.client_max_window_bits
        else:
            self._out_no_takeover = params.server_no_context_takeover
            self._in_no_takeover = params.client_no_context_takeover
            self._out_bits = params.server_max_window_bits
        self._out_bits = max(self._out_bits, _MIN_BITS)
        self._in_bits = _MAX_BITS  # a larger window inflates whatever the peer used
        self._level = level
        self._mem_level = mem_level
        self._compressor: zlib._Compress | None = None
        self._decompressor: zlib._Decompress | None = None

    # ---- outgoing -----------------------------------------------------------------------------
    @property
    def compress_in_order(self) -> bool:
        """Whether our messages share one compression context (context takeover): then they
        are compressed one at a time, in wire order. Without it `compress` keeps no state
        and may run in any thread, several at once."""
        return not self._out_no_takeover

    def compress(self, payload: bytes) -> bytes:
        """One whole message, compressed (RFC 7692 7.2.1), without the 00 00 ff ff tail."""
        compressor = self._compressor
        if compressor is None:
            compressor = zlib.compressobj(self._level, zlib.DEFLATED, -self._out_bits,
                                          self._mem_level)
        data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
        self._compressor = None if self._out_no_takeover else compressor
        if data.endswith(_TAIL):
            data = data[:-4]
        return data or b"\x00"  # an empty message compresses to one empty stored block

    # ---- incoming -----------------------------------------------------------------------------
    def inflate(self, data: bytes, limit: int, *, end: bool) -> bytes:
        """Inflate one piece of a compressed message; `end` with its last piece.

        At most `limit` bytes may come out (what is left of the message size limit):
        beyond it DeflateError(1009) is raised having inflated no more than limit + 1.
        """
        decompressor = self._decompressor
        if decompressor is None:
            decompressor = self._decompressor = zlib.decompressobj(-self._in_bits)
        if end:
            data += _TAIL
        try:
            out = decompressor.decompress(data, limit + 1)
        except zlib.error as exc:
            self._decompressor = None
            raise DeflateError(1007, f"bad compressed data: {exc}") from None
        if len(out) > limit:
            self._decompressor = None
            raise DeflateError(1009, "message too big")
        if end and self._in_no_takeover:
            self._decompressor = None
        return out

    def reset_inflate(self) -> None:
        """Forget a message in progress (the connection failed)."""
        self._decompressor = None

    @property
    def holds_memory(self) -> bool:
        """Whether a zlib object is kept between messages (for tests and measurements)."""
        return self._compressor is not None or self._decompressor is not None
