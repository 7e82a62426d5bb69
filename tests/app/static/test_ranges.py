"""Unit tests for reactor.app.static.ranges: Range parsing, coalescing, multipart framing."""

from __future__ import annotations

from email import message_from_bytes

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reactor.app.static.ranges import Multipart, coalesce, parse_ranges


@pytest.mark.parametrize(("header", "expected"), [
    (b"bytes=0-0", [(0, 0)]),
    (b"bytes=0-99", [(0, 99)]),
    (b"bytes=0-1000", [(0, 99)]),
    (b"bytes=10-", [(10, 99)]),
    (b"bytes=-10", [(90, 99)]),
    (b"bytes=-1000", [(0, 99)]),
    (b"BYTES=1-2", [(1, 2)]),
    (b"bytes=1-2, 5-6", [(1, 2), (5, 6)]),
    (b"bytes=5-6,1-2", [(5, 6), (1, 2)]),  # the order asked for
    (b"bytes=1-2,,3-4", [(1, 4)]),  # empty list element; adjacent ranges merge
    (b"bytes=0-10,5-20", [(0, 20)]),
    (b"bytes=0-,0-,0-", [(0, 99)]),
    (b"bytes=-5,0-1", [(95, 99), (0, 1)]),
    (b"bytes=50-59,0-1,55-70", [(50, 70), (0, 1)]),  # merged where the first was
    (b"bytes=100-", []),
    (b"bytes=100-200", []),
    (b"bytes=-0", []),
    (b"bytes=100-,200-", []),
    (b"bytes=100-,0-0", [(0, 0)]),
    (b"bytes=99999999999999999999999-", []),
    (b"bytes=0-99999999999999999999999", [(0, 99)]),
    (b"bytes=" + b"9" * 5000 + b"-", []),  # beyond int()'s digit limit: no ValueError
])
def test_parse_ranges(header: bytes, expected: list[tuple[int, int]]) -> None:
    assert parse_ranges(header, 100) == expected


@pytest.mark.parametrize("header", [
    b"", b"bytes", b"bytes=", b"bytes=,", b"items=0-1", b"bytes=a-b", b"bytes=5-1",
    b"bytes=-", b"bytes=1-2-3", b"bytes=+1-2", b"bytes= 1 - 2", b"bytes=0-1,x",
    b"bytes=\xd9\xa1-2",
])
def test_parse_ranges_invalid_is_ignored(header: bytes) -> None:
    assert parse_ranges(header, 100) is None


def test_parse_ranges_cap_ignores_header() -> None:
    many = b"bytes=" + b",".join(b"%d-%d" % (i, i) for i in range(0, 40, 2))
    assert parse_ranges(many, 100, max_ranges=16) is None
    assert parse_ranges(many, 100, max_ranges=20) is not None


def test_parse_ranges_empty_representation_is_ignored() -> None:
    assert parse_ranges(b"bytes=-5", 0) is None
    assert parse_ranges(b"bytes=0-", 0) is None


@given(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 200)), max_size=20),
       st.integers(1, 150))
def test_parse_ranges_properties(pairs: list[tuple[int, int]], size: int) -> None:
    specs = [(min(a, b), max(a, b)) for a, b in pairs]
    header = b"bytes=" + b",".join(b"%d-%d" % spec for spec in specs)
    result = parse_ranges(header, size, max_ranges=32)
    if not specs:
        assert result is None
        return
    assert result is not None
    wanted = {i for a, b in specs for i in range(a, min(b, size - 1) + 1)}
    covered = {i for a, b in result for i in range(a, b + 1)}
    assert covered == wanted
    assert all(0 <= a <= b < size for a, b in result)
    ordered = sorted(result)
    assert all(ordered[i][1] + 1 < ordered[i + 1][0] for i in range(len(ordered) - 1))
    # each part where the first range-spec it serves was asked for
    satisfiable = [(a, min(b, size - 1)) for a, b in specs if a < size]
    firsts = [min(i for i, (a, b) in enumerate(satisfiable) if first <= a and b <= last)
              for first, last in result]
    assert firsts == sorted(firsts)


def test_coalesce() -> None:
    assert coalesce([]) == []
    assert coalesce([(5, 9), (0, 4)]) == [(0, 9)]
    assert coalesce([(5, 6), (0, 1)]) == [(5, 6), (0, 1)]
    assert coalesce([(10, 12), (0, 1), (11, 20), (0, 0)]) == [(10, 20), (0, 1)]
    assert coalesce([(0, 9), (2, 3)]) == [(0, 9)]
    assert coalesce([(0, 1), (3, 4)]) == [(0, 1), (3, 4)]


def test_multipart_framing_is_byte_exact() -> None:
    data = bytes(range(50))
    multipart = Multipart(b"XYZ", b"text/plain; charset=utf-8", 50)
    body = multipart.from_bytes(data, [(0, 1), (10, 12)])
    assert body == (
        b"--XYZ\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Range: bytes 0-1/50\r\n\r\n" + data[0:2] +
        b"\r\n--XYZ\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Range: bytes 10-12/50\r\n\r\n" + data[10:13] +
        b"\r\n--XYZ--\r\n")
    assert multipart.media_type == b"multipart/byteranges; boundary=XYZ"


def test_multipart_parses_with_the_email_package() -> None:
    data = b"0123456789abcdefghij"
    multipart = Multipart(b"b0undary", b"application/octet-stream", len(data))
    ranges = [(0, 3), (8, 8), (15, 19)]
    raw = (b"Content-Type: " + multipart.media_type + b"\r\n\r\n"
           + multipart.from_bytes(data, ranges))
    parts = message_from_bytes(raw).get_payload()
    assert [p["Content-Range"] for p in parts] == ["bytes 0-3/20", "bytes 8-8/20",
                                                   "bytes 15-19/20"]
    assert [p.get_payload(decode=True) for p in parts] == [b"0123", b"8", b"fghij"]
