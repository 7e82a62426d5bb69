"""Property tests for RequestParser: any split of the input gives the same messages as feeding
it whole, and arbitrary or mutated bytes give events or RemoteProtocolError, nothing else."""

from __future__ import annotations

import string
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from reactor.proto import RemoteProtocolError, RequestParser
from tests.proto.test_http1 import Collector, drain, feed_pieces

# Example counts, deadline and health checks come from the hypothesis profile tests/conftest.py
# loads: "ci" (short) for `make test`, "fuzz" (thousands of examples) for `make fuzz`.

TOKEN = "!#$%&'*+-.^_`|~" + string.digits + string.ascii_letters
PCHAR = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@%/"
# Maps every byte to one allowed in a field value (VCHAR, obs-text, SP, HTAB).
VALUE_TABLE = bytes(
    b if 0x21 <= b <= 0x7E or b >= 0x80 or b in (0x20, 0x09) else 0x41 + b % 26 for b in range(256)
)
SPECIAL = {"host", "content-length", "transfer-encoding", "connection", "expect"}
OWS = st.sampled_from([b"", b" ", b"\t", b"  \t"])

Expected = tuple[tuple[Any, ...], bytes, tuple[tuple[bytes, bytes], ...]]


def random_case(draw: st.DrawFn, name: str) -> bytes:
    return draw(st.sampled_from([name, name.upper(), name.title(), name.swapcase()])).encode()


def field(draw: st.DrawFn, name: bytes, value: bytes) -> tuple[bytes, bytes, bytes]:
    """(wire line, lower name, stripped value)."""
    line = name + b":" + draw(OWS) + value + draw(OWS) + b"\r\n"
    return line, name.lower(), value.strip(b" \t")


@st.composite
def plain_fields(draw: st.DrawFn, max_size: int = 4) -> list[tuple[bytes, bytes, bytes]]:
    names = draw(
        st.lists(
            st.text(TOKEN, min_size=1, max_size=10).filter(lambda n: n.lower() not in SPECIAL),
            max_size=max_size,
        )
    )
    fields = []
    for name in names:
        value = draw(st.binary(max_size=20)).translate(VALUE_TABLE)
        fields.append(field(draw, name.encode(), value))
    return fields


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, Expected]:
    """One valid request on the wire and the message the parser must produce."""
    is11 = draw(st.booleans()) or draw(st.booleans())
    method = draw(st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"PROPFIND"]))
    target = b"/" + draw(st.text(PCHAR, max_size=30)).encode()
    kind = draw(st.sampled_from(["none", "length", "chunked"] if is11 else ["none", "length"]))
    body = draw(st.binary(max_size=200)) if kind != "none" else b""
    lines = draw(plain_fields())
    if is11 or draw(st.booleans()):
        lines.append(field(draw, random_case(draw, "host"), b"example.com"))
    connection = draw(st.sampled_from([None, b"close", b"keep-alive", b"Upgrade, Close"]))
    if connection is not None:
        lines.append(field(draw, random_case(draw, "connection"), connection))
    expect = is11 and draw(st.booleans())
    if expect:
        lines.append(field(draw, random_case(draw, "expect"), b"100-continue"))
    if kind == "length":
        lines.append(field(draw, random_case(draw, "content-length"), b"%d" % len(body)))
    elif kind == "chunked":
        lines.append(field(draw, random_case(draw, "transfer-encoding"), b"chunked"))
    lines = draw(st.permutations(lines))

    wire = [draw(st.sampled_from([b"", b"", b"\r\n"]))]
    wire.append(b"%s %s HTTP/%s\r\n" % (method, target, b"1.1" if is11 else b"1.0"))
    wire.extend(line for line, _, _ in lines)
    wire.append(b"\r\n")
    trailers: list[tuple[bytes, bytes, bytes]] = []
    if kind == "chunked":
        wire.append(chunked_body(draw, body))
        trailers = draw(plain_fields(max_size=2))
        wire.extend(line for line, _, _ in trailers)
        wire.append(b"\r\n")
    else:
        wire.append(body)

    tokens = connection.lower() if connection else b""
    keep_alive = b"close" not in tokens if is11 else tokens == b"keep-alive"
    head = (
        method,
        target,
        b"1.1" if is11 else b"1.0",
        tuple((name, value) for _, name, value in lines),
        keep_alive,
        expect and (kind == "chunked" or bool(body)),
        None if kind == "chunked" else len(body),
        kind == "chunked",
    )
    return b"".join(wire), (head, body, tuple((name, value) for _, name, value in trailers))


def chunked_body(draw: st.DrawFn, body: bytes) -> bytes:
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=4)))
    out = []
    for start, end in zip([0, *cuts], [*cuts, len(body)], strict=True):
        if end > start:
            size = b"%x" % (end - start)
            if draw(st.booleans()):
                size = size.upper()
            ext = draw(st.sampled_from([b"", b";a=b", b" ;x", b';q="1 2"']))
            out.append(size + ext + b"\r\n" + body[start:end] + b"\r\n")
    out.append(draw(st.sampled_from([b"0", b"000", b"0;end"])) + b"\r\n")
    return b"".join(out)


@st.composite
def splits(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """``data`` cut at up to 12 random points."""
    cuts = sorted(set(draw(st.lists(st.integers(0, len(data)), max_size=12))))
    return [data[start:end] for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True)]


@given(st.lists(requests(), min_size=1, max_size=4), st.data())
def test_any_split_gives_the_same_messages(
    batch: list[tuple[bytes, Expected]], data: st.DataObject
) -> None:
    stream = b"".join(wire for wire, _ in batch)
    expected = [message for _, message in batch]
    whole, error = feed_pieces([stream])
    assert error is None
    assert whole.messages == expected
    bytewise = [stream[i : i + 1] for i in range(len(stream))]
    pieces = data.draw(splits(stream) | st.just(bytewise), label="pieces")
    cut, error = feed_pieces(pieces)
    assert error is None
    assert cut.messages == expected


INTERESTING = [
    b"\r",
    b"\n",
    b"\r\n",
    b"\x00",
    b" ",
    b"\t",
    b":",
    b";",
    b",",
    b"0",
    b"\x7f",
    b"\xff",
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    stream = b"".join(wire for wire, _ in draw(st.lists(requests(), min_size=1, max_size=3)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(stream)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = draw(st.sampled_from(INTERESTING) | st.binary(min_size=1, max_size=3))
        if action == "insert":
            stream = stream[:at] + piece + stream[at:]
        elif action == "delete":
            stream = stream[:at] + stream[at + draw(st.integers(1, 8)) :]
        else:
            stream = stream[:at] + piece + stream[at + len(piece) :]
    return stream


LIMITS = st.fixed_dictionaries(
    {},
    optional={
        "max_line_bytes": st.integers(8, 200),
        "max_header_bytes": st.integers(16, 600),
        "max_header_fields": st.integers(0, 8),
        "max_body_bytes": st.integers(0, 400),
    },
)


def outcome(pieces: list[bytes], limits: dict[str, int]) -> tuple[Any, ...]:
    """The messages completed, and the error's status and reason (None when none)."""
    collector, error = feed_pieces(pieces, **limits)
    if error is None:
        return collector.messages, None
    assert isinstance(error.reason, str) and error.reason
    assert error.status_hint in (400, 413, 414, 431, 501, 505)
    return collector.messages, (error.status_hint, error.reason)


@given(st.binary(max_size=300) | mutated(), LIMITS, st.data())
def test_arbitrary_bytes_give_events_or_protocol_errors(
    stream: bytes, limits: dict[str, int], data: st.DataObject
) -> None:
    # Any other exception, or a loop that never returns NEED_DATA (drain's bound), fails here.
    # A rejected stream gets the same status and reason however it is split.
    whole = outcome([stream], limits)
    assert outcome(data.draw(splits(stream)), limits) == whole
    assert outcome([stream[i : i + 1] for i in range(len(stream))], limits) == whole


# Pieces that break a rule at a known byte: bare line ends, over-long runs (for the line and
# head limits), and bytes the request-line and field grammars refuse.
BREAKERS = [
    b"\r",
    b"\n",
    b"\rx",
    b"\n\n",
    b"\r\r\n",
    b"a" * 120,
    b"x" * 700,
    b" ",
    b"*",
    b"\x00",
    b";",
    b";=",
    b"=",
    b"\t",
    b"\x7f",
    b"\x16\x03\x01",  # a TLS record header, as a TLS client sends to a plain port
    b"\x80",
    b"g",  # not a hex digit: a chunk-size line that cannot go on
    b" ;",
]


@st.composite
def rejected(draw: st.DrawFn) -> bytes:
    """Valid requests with rule-breaking pieces put in; most of these are refused."""
    stream = b"".join(wire for wire, _ in draw(st.lists(requests(), min_size=1, max_size=2)))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(stream)))
        piece = draw(st.sampled_from(BREAKERS))
        if draw(st.booleans()):
            stream = stream[:at] + piece + stream[at:]
        else:
            stream = stream[:at] + piece + stream[at + len(piece) :]
    return stream


@given(rejected(), LIMITS, st.data())
def test_rejected_input_gets_the_same_error_however_split(
    stream: bytes, limits: dict[str, int], data: st.DataObject
) -> None:
    whole = outcome([stream], limits)
    bytewise = [stream[i : i + 1] for i in range(len(stream))]
    assert outcome(bytewise, limits) == whole
    assert outcome(data.draw(splits(stream)), limits) == whole


@given(mutated())
def test_error_state_is_final(stream: bytes) -> None:
    parser = RequestParser()
    parser.feed(stream)
    collector = Collector()
    try:
        for event in drain(parser):
            collector.add(event)
    except RemoteProtocolError as exc:
        parser.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            parser.next_event()
        except RemoteProtocolError as again:
            assert again is exc
        else:
            raise AssertionError("parser recovered after an error") from None
