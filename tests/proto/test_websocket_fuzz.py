"""Property tests for WebSocketParser: any split of a stream gives the events of the whole,
and arbitrary bytes give events or one Failure with a close code, nothing else."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reactor.proto.deflate import Deflate, DeflateParams
from reactor.proto.websocket import (
    OP_BINARY,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Failure,
    MessageEncoder,
    WebSocketParser,
    encode_close,
    encode_frame,
    valid_close_code,
)

FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
MASKS = st.binary(min_size=4, max_size=4)


@st.composite
def messages(draw: st.DrawFn) -> tuple[bytes, list[object]]:
    """A valid client stream: messages, fragmented at random with control frames between."""
    stream = []
    expected: list[object] = []
    for _ in range(draw(st.integers(0, 4))):
        data: str | bytes = draw(st.one_of(st.text(max_size=40), st.binary(max_size=300)))
        payload = data.encode() if isinstance(data, str) else data
        cuts = sorted(draw(st.lists(st.integers(0, len(payload)), max_size=3)))
        pieces = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)], strict=True)]
        for index, piece in enumerate(pieces):
            opcode = (OP_TEXT if isinstance(data, str) else OP_BINARY) if index == 0 else OP_CONT
            last = index == len(pieces) - 1
            stream.append(encode_frame(opcode, piece, fin=last, mask=draw(MASKS)))
            if last:
                expected.append(("message", data))
            if draw(st.booleans()):
                ping = draw(st.binary(max_size=125))
                stream.append(encode_frame(draw(st.sampled_from([OP_PING, OP_PONG])), ping,
                                           mask=draw(MASKS)))
                expected.append(("control", ping))
    return b"".join(stream), expected


def summary(events: Sequence[object]) -> list[object]:
    out: list[object] = []
    for event in events:
        name = type(event).__name__
        if name == "Message":
            out.append(("message", event.data))  # type: ignore[attr-defined]
        elif name in ("Ping", "Pong"):
            out.append(("control", event.payload))  # type: ignore[attr-defined]
        else:
            out.append(repr(event))
    return out


@FUZZ
@given(messages(), st.lists(st.integers(1, 64), max_size=50))
def test_any_split_equals_whole(case: tuple[bytes, list[object]], sizes: list[int]) -> None:
    stream, expected = case
    stream += encode_close(1000, "done", mask=b"abcd")
    whole = summary(WebSocketParser().receive(stream))
    assert whole == [*expected, "Close(1000, 'done')"]
    parser = WebSocketParser()
    events: list[object] = []
    pos = 0
    for size in sizes:
        events.extend(parser.receive(stream[pos:pos + size]))
        pos += size
    events.extend(parser.receive(stream[pos:]))
    assert summary(events) == whole


def check_arbitrary(parser: WebSocketParser, data: bytes, split: int) -> None:
    events = parser.receive(data[:split]) + parser.receive(data[split:])
    failures = [e for e in events if isinstance(e, Failure)]
    assert len(failures) <= 1
    if failures:
        assert events[-1] is failures[0]
        assert valid_close_code(failures[0].code)


@FUZZ
@given(st.binary(max_size=400), st.integers(0, 400))
def test_arbitrary_bytes_give_events_or_one_failure(data: bytes, split: int) -> None:
    check_arbitrary(WebSocketParser(max_message_bytes=256), data, split)


@FUZZ
@given(st.binary(max_size=400), st.integers(0, 400))
def test_arbitrary_bytes_with_deflate(data: bytes, split: int) -> None:
    check_arbitrary(WebSocketParser(max_message_bytes=256, deflate=Deflate(DeflateParams())),
                    data, split)


@FUZZ
@given(st.lists(st.one_of(st.text(max_size=200), st.binary(max_size=200)), max_size=5),
       st.booleans(), st.integers(1, 50))
def test_compressed_stream_any_split(datas: list[str | bytes], takeover: bool,
                                     size: int) -> None:
    params = DeflateParams(server_no_context_takeover=not takeover,
                           client_no_context_takeover=not takeover)
    encoder = MessageEncoder(Deflate(params, client=True), mask_source=lambda: b"\x00\x01\x02\x03")
    stream = b"".join(encoder.message(d) for d in datas)
    parser = WebSocketParser(deflate=Deflate(params))
    events = []
    for pos in range(0, len(stream), size):
        events.extend(parser.receive(stream[pos:pos + size]))
    assert [e.data for e in events] == datas  # type: ignore[union-attr]
