"""PROXY protocol v1/v2 parsing on bytes: every family, truncation, limits, garbage, splits."""

from __future__ import annotations

import ipaddress
import itertools
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reactor.proto.proxyproto import (
    MAX_V1_BYTES,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderParser,
    ProxyProtocolError,
    parse,
)

TAIL = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def v2(command: int = 1, family: int = 0x11, address: bytes = b"", tlvs: bytes = b"",
       version: int = 2, length: int | None = None) -> bytes:
    payload = address + tlvs
    size = len(payload) if length is None else length
    return V2_SIGNATURE + bytes([(version << 4) | command, family]) + struct.pack(
        "!H", size) + payload


def tcp4(src: str = "203.0.113.7", dst: str = "10.0.0.1", sport: int = 51234,
         dport: int = 443) -> bytes:
    return (bytes(int(p) for p in src.split(".")) + bytes(int(p) for p in dst.split("."))
            + struct.pack("!HH", sport, dport))


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + struct.pack("!H", len(value)) + value


def whole(data: bytes) -> tuple[ProxyHeader, bytes]:
    parser = ProxyHeaderParser()
    header = parser.feed(data)
    assert header is not None
    return header, parser.trailing_data


def reason(data: bytes) -> str:
    with pytest.raises(ProxyProtocolError) as info:
        ProxyHeaderParser().feed(data)
    return info.value.reason


# ---- v1 --------------------------------------------------------------------------------------

def test_v1_tcp4() -> None:
    header, rest = whole(b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n" + TAIL)
    assert header == ProxyHeader(1, "PROXY", "TCP4", ("192.0.2.1", 56324),
                                 ("198.51.100.2", 443))
    assert rest == TAIL


def test_v1_tcp6() -> None:
    header, rest = whole(b"PROXY TCP6 2001:db8::1 2001:db8::2 65535 0\r\n")
    assert header.family == "TCP6"
    assert header.source == ("2001:db8::1", 65535)
    assert header.destination == ("2001:db8::2", 0)
    assert rest == b""


def test_v1_tcp6_v4_mapped_source_reads_as_ipv4_like_v2() -> None:
    # HAProxy on a dual-stack bind ("bind :::80 v4v6") sends an IPv4 client as v4-mapped:
    # v1 must name it as v2 does ("192.0.2.1"), not as Python prints it ("::ffff:c000:201").
    line = b"PROXY TCP6 ::ffff:192.0.2.1 ::ffff:198.51.100.2 56324 443\r\n"
    header, _rest = whole(line)
    assert header.source == ("192.0.2.1", 56324)
    assert header.destination == ("198.51.100.2", 443)
    mapped = (ipaddress.IPv6Address("::ffff:192.0.2.1").packed
              + ipaddress.IPv6Address("::ffff:198.51.100.2").packed
              + struct.pack("!HH", 56324, 443))
    assert whole(v2(family=0x21, address=mapped))[0].source == header.source


@pytest.mark.parametrize("line", [b"PROXY UNKNOWN\r\n",
                                  b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"])
def test_v1_unknown_uses_the_real_peer(line: bytes) -> None:
    header, rest = whole(line + TAIL)
    assert (header.family, header.source, header.destination) == ("UNKNOWN", None, None)
    assert rest == TAIL


def test_v1_longest_allowed_line() -> None:
    src = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    line = f"PROXY TCP6 {src} {src} 65535 65535\r\n".encode()
    assert whole(line)[0].source == (src, 65535)
    # 2.1's worst case is UNKNOWN with two full IPv6 addresses: exactly 107 bytes
    unknown = f"PROXY UNKNOWN {src} {src} 65535 65535\r\n".encode()
    assert len(unknown) == MAX_V1_BYTES
    assert whole(unknown)[0].family == "UNKNOWN"


@pytest.mark.parametrize(("data", "expected"), [
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2" + b" " * 80, "proxy-v1-too-long"),
    (b"PROXY UNKNOWN " + b"x" * 100 + b"\r\n", "proxy-v1-too-long"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "proxy-v1-bad-line-end"),
    (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "proxy-v1-bad-family"),
    (b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", "proxy-v1-bad-family"),
    (b"PROXY \r\n", "proxy-v1-bad-family"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "proxy-v1-bad-fields"),
    (b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "proxy-v1-bad-fields"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "proxy-v1-bad-fields"),
    (b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", "proxy-v1-bad-address"),
    (b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "proxy-v1-bad-address"),
    (b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "proxy-v1-bad-address"),
    (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "proxy-v1-bad-address"),
    (b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "proxy-v1-bad-address"),
    (b"PROXY TCP4 1.2.3.\xff 5.6.7.8 1 2\r\n", "proxy-v1-bad-address"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "proxy-v1-bad-port"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "proxy-v1-bad-port"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "proxy-v1-bad-port"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n", "proxy-v1-bad-port"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 +2\r\n", "proxy-v1-bad-port"),
])
def test_v1_refused(data: bytes, expected: str) -> None:
    assert reason(data) == expected


# ---- v2 --------------------------------------------------------------------------------------

def test_v2_tcp4() -> None:
    header, rest = whole(v2(address=tcp4()) + TAIL)
    assert header == ProxyHeader(2, "PROXY", "TCP4", ("203.0.113.7", 51234), ("10.0.0.1", 443))
    assert rest == TAIL


def test_v2_tcp6_and_mapped_v4() -> None:
    src = bytes.fromhex("20010db8000000000000000000000001")
    mapped = bytes(10) + b"\xff\xff" + bytes([192, 0, 2, 9])
    header, _ = whole(v2(family=0x21, address=src + mapped + struct.pack("!HH", 8080, 80)))
    assert header.source == ("2001:db8::1", 8080)
    assert header.destination == ("192.0.2.9", 80)


def test_v2_local_command_keeps_the_real_peer() -> None:
    # HAProxy's health checks: LOCAL, often with family UNSPEC and no address at all.
    header, rest = whole(v2(command=0, family=0x00) + TAIL)
    assert (header.command, header.source) == ("LOCAL", None)
    assert rest == TAIL
    header, _ = whole(v2(command=0, family=0x11, address=tcp4()))
    assert (header.command, header.source) == ("LOCAL", None)


@pytest.mark.parametrize(("family", "size"), [(0x00, 0), (0x12, 12), (0x22, 36), (0x31, 216)])
def test_v2_families_we_do_not_relay_use_the_real_peer(family: int, size: int) -> None:
    header, _ = whole(v2(family=family, address=bytes(size)))
    assert header.source is None and header.command == "PROXY"


def test_v2_tlvs_used_and_skipped() -> None:
    ssl = tlv(0x20, b"\x07" + bytes(4) + tlv(0x21, b"TLSv1.3"))
    tlvs = (tlv(0x04, b"\x00" * 5) + tlv(0x02, b"example.com") + tlv(0x01, b"h2")
            + ssl + tlv(0x05, b"id-1") + tlv(0xE0, b"custom") + tlv(0x03, bytes(4)))
    header, rest = whole(v2(address=tcp4(), tlvs=tlvs) + b"x")
    assert header.tls and header.authority == "example.com"
    assert header.alpn == b"h2" and header.unique_id == b"id-1"
    assert rest == b"x"
    plain, _ = whole(v2(address=tcp4(), tlvs=tlv(0x20, b"\x00" + bytes(4))))
    assert not plain.tls


@pytest.mark.parametrize(("data", "expected"), [
    (v2(version=1, address=tcp4()), "proxy-v2-bad-version"),
    (v2(version=3, address=tcp4()), "proxy-v2-bad-version"),
    (v2(command=2, address=tcp4()), "proxy-v2-bad-command"),
    (v2(family=0x13, address=tcp4()), "proxy-v2-bad-family"),
    (v2(family=0x41, address=tcp4()), "proxy-v2-bad-family"),
    (v2(family=0x21, address=tcp4()), "proxy-v2-short-address"),
    (v2(address=tcp4()[:8]), "proxy-v2-short-address"),
    (v2(address=tcp4(), length=2049), "proxy-v2-too-long"),
    (v2(address=tcp4(), length=0xFFFF), "proxy-v2-too-long"),
    (v2(address=tcp4(), tlvs=b"\x02\x00"), "proxy-v2-bad-tlv"),
    (v2(address=tcp4(), tlvs=b"\x02\x00\x05abc"), "proxy-v2-bad-tlv"),
    (v2(address=tcp4(), tlvs=tlv(0x20, b"\x01\x00")), "proxy-v2-bad-tlv"),
    (v2(address=tcp4(), tlvs=tlv(0x02, b"\xffhost")), "proxy-v2-bad-tlv"),
])
def test_v2_refused(data: bytes, expected: str) -> None:
    assert reason(data) == expected


def test_v2_bound_is_configurable() -> None:
    data = v2(address=tcp4(), tlvs=tlv(0x04, bytes(100)))
    assert ProxyHeaderParser(max_v2_payload=200).feed(data) is not None
    with pytest.raises(ProxyProtocolError, match="proxy-v2-too-long"):
        ProxyHeaderParser(max_v2_payload=100).feed(data)


# ---- neither, truncated ---------------------------------------------------------------------

@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\r\n", b"\x16\x03\x01\x02\x00", b"PROXX", b"proxy TCP4", b"\r\n\r\n\x01",
    b"\x00", b" PROXY TCP4", b"\r\n\r\n\x00\r\nQUIT\r",
])
def test_anything_else_is_a_missing_header(data: bytes) -> None:
    assert reason(data) == "proxy-header-missing"


@pytest.mark.parametrize("data", [
    b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n",
    v2(address=tcp4(), tlvs=tlv(0x02, b"example.com")),
    v2(command=0, family=0x00),
])
def test_every_truncation_needs_more_data(data: bytes) -> None:
    for cut in range(len(data)):
        assert parse(data[:cut]) is None, cut
        parser = ProxyHeaderParser()
        assert parser.feed(data[:cut]) is None
        assert parser.buffered == cut
    assert parse(data) is not None


def test_feeding_after_the_header_is_a_bug() -> None:
    parser = ProxyHeaderParser()
    assert parser.feed(b"PROXY UNKNOWN\r\n") is not None
    with pytest.raises(RuntimeError):
        parser.feed(b"more")


# ---- any split equals whole -----------------------------------------------------------------

def outcome(chunks: list[bytes]) -> tuple[str, object, bytes]:
    parser = ProxyHeaderParser()
    data = b"".join(chunks)
    try:
        for index, chunk in enumerate(chunks):
            header = parser.feed(chunk)
            if header is not None:
                rest = parser.trailing_data + b"".join(chunks[index + 1:])
                return "header", header, rest
    except ProxyProtocolError as exc:
        return "error", exc.reason, b""
    return "incomplete", len(data), b""


valid_headers = st.sampled_from([
    b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n",
    b"PROXY TCP6 2001:db8::1 ::1 1 65535\r\n",
    b"PROXY UNKNOWN whatever\r\n",
    v2(address=tcp4(), tlvs=tlv(0x20, b"\x01" + bytes(4)) + tlv(0x02, b"a.example")),
    v2(command=0, family=0x00),
    v2(family=0x21, address=bytes(36)),
])


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@given(valid_headers, st.binary(max_size=40), st.lists(st.integers(0, 200), max_size=6))
def test_valid_header_any_split_equals_whole(header: bytes, tail: bytes,
                                             cuts: list[int]) -> None:
    data = header + tail
    expected = outcome([data])
    assert expected[0] == "header" and expected[2] == tail
    assert outcome(split(data, cuts)) == expected


@given(st.one_of(st.binary(max_size=140),
                 valid_headers.flatmap(lambda h: st.binary(max_size=len(h)).map(
                     lambda noise: bytes(a ^ b for a, b in zip(h, noise, strict=False))
                     + h[len(noise):]))),
       st.lists(st.integers(0, 200), max_size=6))
def test_garbage_any_split_equals_whole(data: bytes, cuts: list[int]) -> None:
    assert outcome(split(data, cuts)) == outcome([data])
