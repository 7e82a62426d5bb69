"""Property tests for the app layer's parsers: multipart/form-data, urlencoded forms and
queries, cookies, Range, the If-* validators, Accept-Encoding and Forwarded. Each is held to a
reference (an encoder written from the RFC, urllib's, set arithmetic) or an invariant (the
same parts whatever the reads, never an exception other than the parser's own)."""

from __future__ import annotations

import io
import itertools
import string
import time
from typing import Any
from urllib.parse import quote, urlencode

from hypothesis import assume, given
from hypothesis import strategies as st

from reactor.app.compression import _parse_accepts_gzip
from reactor.app.multipart import MultipartError, parse_multipart
from reactor.app.proxy import TrustedNetworks, TrustedProxyApp
from reactor.app.request import parse_cookies, parse_form, parse_query
from reactor.app.static.conditional import (
    evaluate,
    http_date,
    parse_etags,
    parse_http_date,
    range_applies,
)
from reactor.app.static.ranges import parse_ranges
from reactor.app.types import FunctionApp, Headers, Request, Response

# Example counts, deadline and health checks come from the hypothesis profile tests/conftest.py
# loads: "ci" (short) for `make test`, "fuzz" (thousands of examples) for `make fuzz`.


def request(headers: list[tuple[bytes, bytes]], body: bytes = b"", query: str = "") -> Request:
    return Request("POST", "/", query, "HTTP/1.1", Headers(headers), body)


# ---- multipart/form-data ----------------------------------------------------------------------

BOUNDARY = b"XyZ"


class Pieces(io.RawIOBase):
    """A body read back in pieces of the given sizes (in turn), as a socket would give it."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self.data, self.pos, self.sizes, self.turn = data, 0, sizes, 0

    def read(self, size: int = -1) -> bytes:
        want = self.sizes[self.turn % len(self.sizes)]
        self.turn += 1
        out = self.data[self.pos:self.pos + min(size, want)]
        self.pos += len(out)
        return out


def outcome(source: Any) -> Any:
    """What the parser made of a body: its fields and files in order, or its error."""
    try:
        form = parse_multipart(source, BOUNDARY)
    except MultipartError as exc:
        return ("error", str(exc))
    files = [(name, up.filename, up.content_type, up.read()) for name, up in form.files.items()]
    form.close()
    return (form.items(), files)


# Bytes that matter to a multipart parser: line ends, dashes, the boundary and its prefixes.
ATOMS = [b"\r\n", b"--", b"--XyZ", b"--XyZ--", b"\r\n--Xy", b"\r\n--XyZ", b"\r\n--XyZ-",
         b"X", b"\r", b"\n", b"a", b"\x00\xff", b"-", b"\r\n\r\n", b" ", b"x--XyZ\r\n",
         b'Content-Disposition: form-data; name="a"', b"; filename=\"f\"", b"\r\n\r\nv",
         b" " * 130]  # transport padding: two of them are more than a delimiter line may have
wire = st.lists(st.sampled_from(ATOMS), max_size=24).map(b"".join)
sizes = st.lists(st.integers(1, 9), min_size=1, max_size=5)


@given(wire, sizes)
def test_multipart_any_reads_give_the_same_parts(body: bytes, pieces: list[int]) -> None:
    assert outcome(Pieces(body, pieces)) == outcome(io.BytesIO(body))


def escape(name: str) -> str:
    """WHATWG HTML's multipart/form-data escapes for a name or filename."""
    return name.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def encode(fields: list[tuple[str, str | None, bytes]], preamble: bytes) -> bytes:
    """RFC 7578 (as a browser writes it): one part per field, files with a Content-Type."""
    out = [preamble]
    for name, filename, data in fields:
        disposition = f'form-data; name="{escape(name)}"'
        if filename is not None:
            disposition += f'; filename="{escape(filename)}"'
        out.append(b"--" + BOUNDARY + b"\r\nContent-Disposition: " + disposition.encode())
        if filename is not None:
            out.append(b"\r\nContent-Type: application/x-test")
        out.append(b"\r\n\r\n" + data + b"\r\n")
    out.append(b"--" + BOUNDARY + b"--\r\n")
    return b"".join(out)


# no backslash: a name with one is ambiguous between a browser (sent as is) and a client
# that escapes it; no "/": a filename is kept without its directory part
names = st.text(alphabet='ab é";=%*\r\n\t', min_size=1, max_size=8)
# the boundary's prefixes and every byte of it, but never the whole delimiter (a sender picks
# a boundary that is not in the content, RFC 2046 5.1.1)
contents = st.lists(st.sampled_from([b"\r\n", b"--", b"\r\n--Xy", b"X", b"yZ", b"\r", b"\n",
                                     b"a", b"\x00\xff", b"-", b"\r\n--XyZ"[:-1] + b"z"]),
                    max_size=10).map(b"".join)


@given(st.lists(st.tuples(names, st.none() | names, contents), min_size=1, max_size=5),
       st.sampled_from([b"", b"preamble\r\n", b"x--XyZ\r\n", b"\r\n"]), sizes)
def test_multipart_round_trip(fields: list[tuple[str, str | None, bytes]], preamble: bytes,
                              pieces: list[int]) -> None:
    assume(not any(b"\r\n--XyZ" in b"\r\n" + data + b"\r\n" for _, _, data in fields))
    got = outcome(Pieces(encode(fields, preamble), pieces))
    assert got == (
        [(name, data.decode("utf-8", "replace")) for name, filename, data in fields
         if filename is None],
        [(name, filename, "application/x-test", data) for name, filename, data in fields
         if filename is not None])


@given(st.binary(max_size=200), sizes)
def test_multipart_garbage_is_a_multipart_error(body: bytes, pieces: list[int]) -> None:
    outcome(Pieces(b"--XyZ\r\n" + body, pieces))


# ---- urlencoded forms, queries, cookies ---------------------------------------------------------

form_text = st.text(alphabet=st.characters(max_codepoint=0xFF, exclude_categories=("Cs",)),
                    max_size=6)


@given(st.lists(st.tuples(form_text, form_text), max_size=6),
       st.sampled_from(["utf-8", "ISO-8859-1", "cp1252"]))
def test_urlencoded_form_round_trip(pairs: list[tuple[str, str]], charset: str) -> None:
    try:
        body = urlencode(pairs, encoding=charset).encode("ascii")
    except UnicodeEncodeError:
        assume(False)
    content_type = b"application/x-www-form-urlencoded; charset=" + charset.encode()
    form = parse_form(request([(b"content-type", content_type)], body))
    # urlencode writes an empty pair as "=", which parses back as ("", "")
    assert form.items() == pairs


query_text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=5)


@given(st.lists(st.tuples(query_text, query_text), max_size=6),
       st.sampled_from(["=", "&", "%", "%zz", "%e9", "+", "%C3"]))
def test_query_round_trip(pairs: list[tuple[str, str]], junk: str) -> None:
    query = urlencode(pairs, quote_via=quote)  # as a browser's URL writes it (UTF-8)
    assert parse_query(request([], query=query)).items() == pairs
    # invalid escapes are kept as they are; a lone % or a non-UTF-8 escape never raises
    parse_query(request([], query=f"{query}&{junk}={junk}"))


COOKIE_NAME = st.text(alphabet="!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits,
                      min_size=1, max_size=6)
COOKIE_VALUE = st.text(alphabet="".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in
                                        '",;\\'), max_size=6)


@given(st.lists(st.tuples(COOKIE_NAME, COOKIE_VALUE, st.booleans()), max_size=6),
       st.sampled_from(["; ", ";", ";  "]))
def test_cookies_first_of_each_name_wins(pairs: list[tuple[str, str, bool]], sep: str) -> None:
    header = sep.join(f'{n}="{v}"' if quoted else f"{n}={v}" for n, v, quoted in pairs)
    expected: dict[str, str] = {}
    for name, value, _ in pairs:
        expected.setdefault(name, value)
    assert parse_cookies(request([(b"cookie", header.encode())])) == expected


@given(st.binary(max_size=60))
def test_any_cookie_header_parses(header: bytes) -> None:
    parse_cookies(request([(b"cookie", header)]))


# ---- Range ------------------------------------------------------------------------------------

number = st.integers(0, 40)
spec = st.one_of(st.tuples(number, number).map(lambda p: (min(p), max(p))),
                 st.tuples(number, st.none()), st.tuples(st.none(), number))


def spec_text(first: int | None, last: int | None) -> str:
    return f"{'' if first is None else first}-{'' if last is None else last}"


@given(st.lists(spec, min_size=1, max_size=6), st.integers(0, 40),
       st.sampled_from([",", ", ", " ,"]))
def test_ranges_cover_exactly_the_bytes_asked_for(specs: list[tuple[int | None, int | None]],
                                                  size: int, sep: str) -> None:
    specs = [s for s in specs if s != (None, None)]
    assume(specs)
    header = ("bytes=" + sep.join(spec_text(*s) for s in specs)).encode()
    got = parse_ranges(header, size)
    if size == 0:
        assert got is None
        return
    wanted: set[int] = set()
    for first, last in specs:
        if first is None:
            assert last is not None
            wanted.update(range(max(size - last, 0), size) if last else ())
        else:
            wanted.update(range(first, size if last is None else min(last + 1, size)))
    assert got is not None
    covered = [i for a, b in got for i in range(a, b + 1)]
    assert sorted(covered) == sorted(wanted) and len(set(covered)) == len(covered)
    for (_, last), (first, _) in itertools.pairwise(sorted(got)):
        assert first > last + 1  # adjacent ranges are merged


@given(st.lists(st.sampled_from([b"bytes", b"=", b"-", b",", b" ", b"0", b"7", b"\xd9\xa3",
                                 b"99999999999999999999", b"x", b"+1"]), max_size=12)
       .map(b"".join) | st.binary(max_size=30), st.integers(0, 50))
def test_any_range_header_is_ignored_refused_or_within_the_file(header: bytes, size: int) -> None:
    got = parse_ranges(header, size)
    for first, last in got or ():
        assert 0 <= first <= last < size


# ---- validators -------------------------------------------------------------------------------

DATE_ATOMS = [b"Sun", b",", b" ", b"06", b"Nov", b"1994", b"08:49:37", b"GMT", b"-", b"94",
              b"\xef\xbc\x91", b"99999", b"24:00:00", b"Feb", b"31"]


@given(st.lists(st.sampled_from(DATE_ATOMS), max_size=9).map(b"".join) | st.binary(max_size=40))
def test_any_validator_header_is_no_exception(value: bytes) -> None:
    parse_http_date(value)
    headers = Headers([(name, value) for name in (b"if-match", b"if-none-match", b"if-range",
                                                  b"if-modified-since", b"if-unmodified-since")])
    evaluate("GET", headers, b'"1-2-3"', 784111777)
    range_applies(headers, b'"1-2-3"', b"Sun, 06 Nov 1994 08:49:37 GMT")


@given(st.integers(0, 2**33))
def test_the_three_date_forms_read_back(seconds: int) -> None:
    t = time.gmtime(seconds)
    assert parse_http_date(http_date(seconds)) == seconds
    asctime = time.strftime("%a %b %d %H:%M:%S %Y", t).replace(" 0", "  ", 1).encode()
    assert parse_http_date(asctime) == seconds


etag = st.text(alphabet="".join(chr(c) for c in range(0x23, 0x7F) if chr(c) != ","),
               max_size=6).map(lambda text: f'"{text}"'.encode())


@given(st.lists(st.tuples(st.booleans(), etag), min_size=1, max_size=5),
       st.sampled_from([b",", b", ", b" ,\t", b",,"]))
def test_etag_lists_read_back(tags: list[tuple[bool, bytes]], sep: bytes) -> None:
    header = sep.join((b"W/" if weak else b"") + tag for weak, tag in tags)
    assert parse_etags(header) == tags


# ---- Accept-Encoding ----------------------------------------------------------------------------

QVALUES = {b"0": 0, b"0.0": 0, b"0.000": 0, b"0.001": 1, b"0.5": 1, b"1": 1, b"1.0": 1,
           b"1.000": 1}
coding = st.sampled_from([b"gzip", b"GZIP", b"x-gzip", b"Gzip", b"*", b"br", b"deflate",
                          b"identity", b"compress"])


@given(st.lists(st.tuples(coding, st.none() | st.sampled_from(sorted(QVALUES)),
                          st.sampled_from([b"", b" ", b"\t"])), max_size=6, unique_by=lambda m:
                m[0].lower().removeprefix(b"x-")))
def test_accept_encoding_follows_rfc9110(members: list[tuple[bytes, bytes | None, bytes]]
                                         ) -> None:
    header = b",".join(ws + c + (b"" if q is None else ws + b";" + ws + b"q=" + q) + ws
                       for c, q, ws in members)
    listed = {c.lower().removeprefix(b"x-"): (1 if q is None else QVALUES[q])
              for c, q, _ in members}
    # 12.5.3: a listed coding is acceptable unless its qvalue is 0; "*" stands for any coding
    # not listed
    expected = bool(listed[b"gzip"]) if b"gzip" in listed else bool(listed.get(b"*", 0))
    assert _parse_accepts_gzip(header) is expected


@given(st.binary(max_size=40))
def test_any_accept_encoding_is_no_exception(header: bytes) -> None:
    _parse_accepts_gzip(header)


# ---- Forwarded --------------------------------------------------------------------------------

TRUSTED = TrustedNetworks(["10.0.0.0/8"])


def forwarded_client(field: bytes) -> tuple[str, str]:
    seen: list[Request] = []

    def app(req: Request) -> Response:
        seen.append(req)
        return Response(200)

    req = Request("GET", "/", "", "HTTP/1.1", Headers([(b"forwarded", field)]),
                  remote_addr="10.0.0.2")
    TrustedProxyApp(FunctionApp(app), TRUSTED, family="forwarded").open(req).respond()
    return seen[0].client_addr, seen[0].scheme


@given(st.text(alphabet=string.printable.replace("\r", "").replace("\n", "").replace(
    "\x0b", "").replace("\x0c", ""), max_size=30),
       st.sampled_from(["for=203.0.113.9;proto=https", 'for="[2001:db8::7]:4711";proto=https']))
def test_a_clients_forwarded_text_never_hides_its_proxys_element(client: str, own: str) -> None:
    """Whatever the client sent, the element its trusted proxy appended to the line is read."""
    address = "203.0.113.9" if "203" in own else "2001:db8::7"
    assert forwarded_client(f"{client}, {own}".encode()) == (address, "https")
