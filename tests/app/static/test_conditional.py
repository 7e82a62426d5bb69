"""Unit tests for reactor.app.static.conditional: dates, ETags, RFC 9110 13.2.2 evaluation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reactor.app.static.conditional import (
    evaluate,
    http_date,
    make_etag,
    parse_etags,
    parse_http_date,
    range_applies,
)
from reactor.app.types import Headers

T = 784111777  # Sun, 06 Nov 1994 08:49:37 GMT (the RFC's example)
ETAG = b'"abc-1-2"'
LM = http_date(T)


def test_http_date_is_imf_fixdate() -> None:
    assert http_date(T) == b"Sun, 06 Nov 1994 08:49:37 GMT"
    assert http_date(0) == b"Thu, 01 Jan 1970 00:00:00 GMT"


@pytest.mark.parametrize("text", [
    b"Sun, 06 Nov 1994 08:49:37 GMT",
    b"Sunday, 06-Nov-94 08:49:37 GMT",
    b"Sun Nov  6 08:49:37 1994",
    b"sun, 06 nov 1994 08:49:37 GMT",
])
def test_parse_http_date_three_forms(text: bytes) -> None:
    assert parse_http_date(text) == T


@pytest.mark.parametrize("text", [
    b"", b"yesterday", b"Sun, 06 Nov 1994 08:49:37 UTC", b"Sun, 06 Foo 1994 08:49:37 GMT",
    b"Sun, 32 Nov 1994 08:49:37 GMT", b"Sun, 06 Nov 1994 25:49:37 GMT",
    b"Sun, 06 Nov 94 08:49:37 GMT", b"Sun, 06 Nov 1994 08:49 GMT", b"1994-11-06T08:49:37Z",
    b"Sun, -6 Nov 1994 08:49:37 GMT",
])
def test_parse_http_date_rejects(text: bytes) -> None:
    assert parse_http_date(text) is None


def test_make_etag_from_inode_size_mtime(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    info = os.stat(path)
    etag = make_etag(info)
    assert etag == b'"%x-3-%x"' % (info.st_ino, info.st_mtime_ns)
    assert make_etag(info, b"-gz") == etag[:-1] + b'-gz"'
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 1))
    assert make_etag(os.stat(path)) != etag


def test_parse_etags() -> None:
    assert parse_etags(b"*") is None
    assert parse_etags(b' "a", W/"b" ,"c"') == [(False, b'"a"'), (True, b'"b"'), (False, b'"c"')]
    assert parse_etags(b"garbage, a") == []


def _h(**fields: str) -> Headers:
    return Headers([(k.replace("_", "-").encode(), v.encode()) for k, v in fields.items()])


@pytest.mark.parametrize(("method", "fields", "expected"), [
    ("GET", {}, None),
    # If-Match: strong comparison, `*`, list
    ("GET", {"if_match": '"abc-1-2"'}, None),
    ("GET", {"if_match": '"x", "abc-1-2"'}, None),
    ("GET", {"if_match": "*"}, None),
    ("GET", {"if_match": 'W/"abc-1-2"'}, 412),
    ("GET", {"if_match": '"other"'}, 412),
    ("GET", {"if_match": "garbage"}, 412),
    # If-Unmodified-Since only without If-Match
    ("GET", {"if_unmodified_since": "Sun, 06 Nov 1994 08:49:36 GMT"}, 412),
    ("GET", {"if_unmodified_since": "Sun, 06 Nov 1994 08:49:37 GMT"}, None),
    ("GET", {"if_unmodified_since": "nonsense"}, None),
    ("GET", {"if_match": '"abc-1-2"', "if_unmodified_since": "Sat, 01 Jan 1994 00:00:00 GMT"},
     None),
    # If-None-Match: weak comparison; 304 for GET/HEAD
    ("GET", {"if_none_match": '"abc-1-2"'}, 304),
    ("HEAD", {"if_none_match": 'W/"abc-1-2"'}, 304),
    ("GET", {"if_none_match": "*"}, 304),
    ("GET", {"if_none_match": '"other"'}, None),
    ("POST", {"if_none_match": '"abc-1-2"'}, 412),
    # If-Modified-Since: ignored when If-None-Match is present, or the date is invalid
    ("GET", {"if_modified_since": "Sun, 06 Nov 1994 08:49:37 GMT"}, 304),
    ("GET", {"if_modified_since": "Mon, 07 Nov 1994 00:00:00 GMT"}, 304),
    ("GET", {"if_modified_since": "Sun, 06 Nov 1994 08:49:36 GMT"}, None),
    ("GET", {"if_modified_since": "not a date"}, None),
    ("POST", {"if_modified_since": "Mon, 07 Nov 1994 00:00:00 GMT"}, None),
    ("GET", {"if_none_match": '"other"', "if_modified_since": "Mon, 07 Nov 1994 00:00:00 GMT"},
     None),
    # order: If-Match failure beats a matching If-None-Match
    ("GET", {"if_match": '"other"', "if_none_match": '"abc-1-2"'}, 412),
])
def test_evaluate(method: str, fields: dict[str, str], expected: int | None) -> None:
    assert evaluate(method, _h(**fields), ETAG, T) == expected


@pytest.mark.parametrize(("fields", "expected"), [
    ({"if_none_match": "*"}, 304),
    ({"if_none_match": '"abc-1-2"'}, None),
    ({"if_match": "*"}, None),
    ({"if_match": '"abc-1-2"'}, 412),
    ({"if_modified_since": "Mon, 07 Nov 2094 00:00:00 GMT"}, None),
    ({"if_unmodified_since": "Sun, 06 Nov 1994 08:49:36 GMT"}, None),
])
def test_evaluate_without_validators(fields: dict[str, str], expected: int | None) -> None:
    """A listing: no ETag (b"") and no date (None); only `*` matches, dates are ignored."""
    assert evaluate("GET", _h(**fields), b"", None) == expected

@pytest.mark.parametrize(("value", "expected"), [
    (None, True),
    ('"abc-1-2"', True),
    ('"other"', False),
    ('W/"abc-1-2"', False),
    ("Sun, 06 Nov 1994 08:49:37 GMT", True),
    ("Sunday, 06-Nov-94 08:49:37 GMT", True),
    ("Sun, 06 Nov 1994 08:49:38 GMT", False),
    ("garbage", False),
])
def test_range_applies(value: str | None, expected: bool) -> None:
    headers = _h() if value is None else _h(if_range=value)
    assert range_applies(headers, ETAG, LM) is expected


def test_list_fields_on_several_lines_are_one_list() -> None:
    headers = Headers([(b"if-none-match", b'"x"'), (b"if-none-match", b'"abc-1-2"')])
    assert evaluate("GET", headers, ETAG, T) == 304
    headers = Headers([(b"if-match", b'"x"'), (b"if-match", b'"abc-1-2"')])
    assert evaluate("GET", headers, ETAG, T) is None
    # a date on two lines is two members: ignored (RFC 9110 13.1.3), as is If-Range
    headers = Headers([(b"if-modified-since", LM), (b"if-modified-since", LM)])
    assert evaluate("GET", headers, ETAG, T) is None
    headers = Headers([(b"if-range", ETAG), (b"if-range", b'"other"')])
    assert range_applies(headers, ETAG, LM) is False


def test_if_range_date_must_be_a_strong_validator() -> None:
    headers = _h(if_range="Sun, 06 Nov 1994 08:49:37 GMT")
    assert range_applies(headers, ETAG, LM, now=T + 1)
    assert not range_applies(headers, ETAG, LM, now=T + 0.5)  # modified this very second
