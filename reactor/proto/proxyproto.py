"""The PROXY protocol (HAProxy, v1 text and v2 binary): the header a load balancer sends first.

Strategy
--------
Sans-IO like the HTTP parser: `ProxyHeaderParser.feed(bytes)` returns None until a whole
header has arrived, then a `ProxyHeader` (source, destination, the TLVs we use) and keeps the
bytes that followed in `trailing_data`, for the protocol that comes next (HTTP, or a TLS
handshake). Anything else raises `ProxyProtocolError` with a short reason.

Every decision depends only on the bytes seen so far, and the search for a line end or the
length field is bounded, so feeding the input in any split gives the same result as feeding
it whole, and a peer can never make us buffer more than `MAX_V1_BYTES` or the v2 bound.

Spec: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt (sections quoted below).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from reactor.proto.errors import RemoteProtocolError

__all__ = [
    "MAX_V1_BYTES",
    "MAX_V2_PAYLOAD_BYTES",
    "V2_SIGNATURE",
    "ProxyHeader",
    "ProxyHeaderParser",
    "ProxyProtocolError",
]

# 2.1: "a receiver may reject an incomplete line which does not contain the CRLF sequence in
# the first 107 characters."
MAX_V1_BYTES = 107
V1_PREFIX = b"PROXY "
# 2.2: the 12-byte signature, then version/command, family/protocol, 16-bit length.
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_HEAD_BYTES = 16
# Our bound on the v2 address block + TLVs: an address (at most 216 bytes for AF_UNIX) and
# the TLVs HAProxy sends (authority <= 255, unique id <= 128, an SSL block) fit well inside.
MAX_V2_PAYLOAD_BYTES = 2048

# v2 TLV types (2.2.7) we read; every other type is skipped after its length is checked.
PP2_TYPE_ALPN = 0x01
PP2_TYPE_AUTHORITY = 0x02
PP2_TYPE_UNIQUE_ID = 0x05
PP2_TYPE_SSL = 0x20
PP2_CLIENT_SSL = 0x01

# family/protocol byte -> (name, address block bytes). 2.2: "other values are unspecified
# and must not be emitted ... receivers must drop connections presenting unexpected values".
_V2_FAMILIES: dict[int, tuple[str, int]] = {
    0x00: ("UNSPEC", 0),
    0x11: ("TCP4", 12), 0x12: ("UDP4", 12),
    0x21: ("TCP6", 36), 0x22: ("UDP6", 36),
    0x31: ("UNIX", 216), 0x32: ("UNIX_DGRAM", 216),
}
_DIGITS = frozenset(b"0123456789")


class ProxyProtocolError(RemoteProtocolError):
    """A missing, malformed or oversized PROXY header; `reason` says which rule broke."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, 400)


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """What the proxy said about the connection it relays.

    `source`/`destination` are (address, port) of the client's connection to the proxy; both
    None for a LOCAL command (the proxy's own health check), UNKNOWN (v1) or a family we do not
    relay (UNSPEC, UDP, unix): the real peer is then the connection's own endpoint (2.1, 2.2).
    `tls` is the v2 SSL TLV's "client connected over SSL/TLS" bit; `authority` the SNI.
    """

    version: int
    command: str  # "PROXY" or "LOCAL"
    family: str  # "TCP4", "TCP6", "UNKNOWN" (v1), or a v2 family name
    source: tuple[str, int] | None = None
    destination: tuple[str, int] | None = None
    tls: bool = False
    authority: str | None = None
    alpn: bytes | None = None
    unique_id: bytes | None = None


class ProxyHeaderParser:
    """Accumulates input until one PROXY header (v1 or v2) is complete."""

    __slots__ = ("_buffer", "header", "max_v2_payload", "trailing_data")

    def __init__(self, *, max_v2_payload: int = MAX_V2_PAYLOAD_BYTES) -> None:
        self._buffer = b""
        self.max_v2_payload = max_v2_payload
        self.header: ProxyHeader | None = None
        self.trailing_data = b""

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def max_wanted(self) -> int:
        """At most this many more bytes can still belong to the header (a reader that
        peeks at its socket needs to look no further)."""
        return max(MAX_V1_BYTES, V2_HEAD_BYTES + self.max_v2_payload) - len(self._buffer)

    def feed(self, data: bytes) -> ProxyHeader | None:
        """The header once complete (then `trailing_data` holds what followed), else None.
        Raises ProxyProtocolError. Not to be fed again after it returned a header."""
        if self.header is not None:
            raise RuntimeError("the PROXY header is already complete")
        buffer = self._buffer = self._buffer + data if self._buffer else bytes(data)
        result = parse(buffer, self.max_v2_payload)
        if result is None:
            return None
        self.header, used = result
        self.trailing_data = buffer[used:]
        self._buffer = b""
        return self.header


def parse(buffer: bytes, max_v2_payload: int = MAX_V2_PAYLOAD_BYTES
          ) -> tuple[ProxyHeader, int] | None:
    """(header, bytes used) when `buffer` starts with a whole header; None when it may still
    become one. Raises ProxyProtocolError when it cannot."""
    if not buffer:
        return None
    if buffer[0] == 0x50:  # "P"
        if not buffer.startswith(V1_PREFIX[:len(buffer)]):
            raise ProxyProtocolError("proxy-header-missing")
        return _parse_v1(buffer)
    if buffer[0] == 0x0D:  # "\r"
        if not buffer.startswith(V2_SIGNATURE[:len(buffer)]):
            raise ProxyProtocolError("proxy-header-missing")
        return _parse_v2(buffer, max_v2_payload)
    raise ProxyProtocolError("proxy-header-missing")


# ---- v1 --------------------------------------------------------------------------------------


def _parse_v1(buffer: bytes) -> tuple[ProxyHeader, int] | None:
    end = buffer.find(b"\n", 0, MAX_V1_BYTES)
    if end < 0:
        if len(buffer) >= MAX_V1_BYTES:
            raise ProxyProtocolError("proxy-v1-too-long")
        return None
    # 2.1: "The header ... ends with the CRLF sequence"
    if buffer[end - 1] != 0x0D:
        raise ProxyProtocolError("proxy-v1-bad-line-end")
    line = buffer[len(V1_PREFIX):end - 1]
    parts = line.split(b" ")
    family = parts[0]
    if family == b"UNKNOWN":
        # 2.1: "the receiver must ignore anything presented before the CRLF"
        return ProxyHeader(1, "PROXY", "UNKNOWN"), end + 1
    if family not in (b"TCP4", b"TCP6"):
        raise ProxyProtocolError("proxy-v1-bad-family")
    if len(parts) != 5:
        raise ProxyProtocolError("proxy-v1-bad-fields")
    version = 4 if family == b"TCP4" else 6
    source = (_v1_address(parts[1], version), _v1_port(parts[3]))
    destination = (_v1_address(parts[2], version), _v1_port(parts[4]))
    return ProxyHeader(1, "PROXY", family.decode("ascii"), source, destination), end + 1


def _v1_address(text: bytes, version: int) -> str:
    if version == 4:
        return _v1_ipv4(text)
    if b"%" in text:  # an IPv6 zone ("fe80::1%eth0") names an interface of the proxy
        raise ProxyProtocolError("proxy-v1-bad-address")
    try:
        address = ipaddress.IPv6Address(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ProxyProtocolError("proxy-v1-bad-address") from None
    return _ipv6_text(address)


def _v1_ipv4(text: bytes) -> str:
    """Dotted-quad only: four decimal octets, no leading zeros (cheaper than ipaddress)."""
    parts = text.split(b".")
    if len(parts) != 4:
        raise ProxyProtocolError("proxy-v1-bad-address")
    for part in parts:
        if (not part or len(part) > 3 or not _DIGITS.issuperset(part)
                or (len(part) > 1 and part[0] == 0x30) or int(part) > 255):
            raise ProxyProtocolError("proxy-v1-bad-address")
    return text.decode("ascii")


def _v1_port(text: bytes) -> int:
    # 2.1: "a number between 0 and 65535 ... leading zeroes are not permitted"
    if (not text or len(text) > 5 or not _DIGITS.issuperset(text)
            or (len(text) > 1 and text[0] == 0x30) or int(text) > 65535):
        raise ProxyProtocolError("proxy-v1-bad-port")
    return int(text)


# ---- v2 --------------------------------------------------------------------------------------


def _parse_v2(buffer: bytes, max_payload: int) -> tuple[ProxyHeader, int] | None:
    if len(buffer) < V2_HEAD_BYTES:
        return None
    version_command, family_byte = buffer[12], buffer[13]
    # 2.2: "The highest four bits contains the version ... must always be 0x2"
    if version_command >> 4 != 2:
        raise ProxyProtocolError("proxy-v2-bad-version")
    command = version_command & 0x0F
    if command > 1:
        raise ProxyProtocolError("proxy-v2-bad-command")
    known = _V2_FAMILIES.get(family_byte)
    if known is None:
        raise ProxyProtocolError("proxy-v2-bad-family")
    length = int.from_bytes(buffer[14:16], "big")
    if length > max_payload:
        raise ProxyProtocolError("proxy-v2-too-long")
    family, address_bytes = known
    if length < address_bytes:
        raise ProxyProtocolError("proxy-v2-short-address")
    total = V2_HEAD_BYTES + length
    if len(buffer) < total:
        return None
    payload = memoryview(buffer)[V2_HEAD_BYTES:total]
    tls, authority, alpn, unique_id = _read_tlvs(payload[address_bytes:])
    source = destination = None
    if command == 0:
        # 2.2: LOCAL "the receiver must accept this connection as valid and must use the real
        # connection endpoints and discard the protocol block including the family"
        name = "LOCAL"
    else:
        name = "PROXY"
        if family == "TCP4":
            source = (_ipv4(payload[0:4]), int.from_bytes(payload[8:10], "big"))
            destination = (_ipv4(payload[4:8]), int.from_bytes(payload[10:12], "big"))
        elif family == "TCP6":
            source = (_ipv6(payload[0:16]), int.from_bytes(payload[32:34], "big"))
            destination = (_ipv6(payload[16:32]), int.from_bytes(payload[34:36], "big"))
    header = ProxyHeader(2, name, family, source, destination, tls, authority, alpn, unique_id)
    return header, total


def _ipv4(packed: memoryview) -> str:
    return ".".join(map(str, packed))


def _ipv6(packed: memoryview) -> str:
    return _ipv6_text(ipaddress.IPv6Address(bytes(packed)))


def _ipv6_text(address: ipaddress.IPv6Address) -> str:
    """A v4-mapped address ("::ffff:10.0.0.1", what a dual-stack proxy sees of an IPv4
    client) as the plain IPv4 address it is -- the same from v1 text and v2 bytes (and never
    Python's "::ffff:a00:1"); any other as its compressed form."""
    mapped = address.ipv4_mapped
    return str(mapped) if mapped is not None else str(address)


def _read_tlvs(block: memoryview) -> tuple[bool, str | None, bytes | None, bytes | None]:
    """(tls, authority, alpn, unique_id) from the TLV block; every TLV must fit exactly."""
    tls = False
    authority = alpn = unique_id = None
    at, end = 0, len(block)
    while at < end:
        if end - at < 3:
            raise ProxyProtocolError("proxy-v2-bad-tlv")
        kind = block[at]
        size = int.from_bytes(block[at + 1:at + 3], "big")
        value = block[at + 3:at + 3 + size]
        if len(value) != size:
            raise ProxyProtocolError("proxy-v2-bad-tlv")
        at += 3 + size
        if kind == PP2_TYPE_SSL:
            # 2.2.5: client (1 byte) + verify (4 bytes) + sub-TLVs
            if size < 5:
                raise ProxyProtocolError("proxy-v2-bad-tlv")
            tls = bool(value[0] & PP2_CLIENT_SSL)
        elif kind == PP2_TYPE_AUTHORITY:
            try:
                authority = bytes(value).decode("ascii")
            except UnicodeDecodeError:
                raise ProxyProtocolError("proxy-v2-bad-tlv") from None
        elif kind == PP2_TYPE_ALPN:
            alpn = bytes(value)
        elif kind == PP2_TYPE_UNIQUE_ID:
            unique_id = bytes(value)
    return tls, authority, alpn, unique_id
