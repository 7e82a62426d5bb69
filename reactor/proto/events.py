"""The events the HTTP/1.1 request parser hands out: RequestHead, Data, EndOfMessage, NEED_DATA.

Strategy: these are built once or more per request on the hot path, so they are plain classes
with ``__slots__`` and a hand-written ``__init__`` (a frozen dataclass ``__init__`` goes through
``object.__setattr__`` per field and costs several times more). Treat them as immutable.
"""

from __future__ import annotations

from typing import TypeAlias

__all__ = [
    "END_OF_MESSAGE",
    "NEED_DATA",
    "Data",
    "EndOfMessage",
    "Event",
    "RequestHead",
]


class RequestHead:
    """A parsed request line and header section.

    ``headers`` keeps the order and duplicates of the wire, with lower-cased names and values
    stripped of surrounding whitespace. ``content_length`` is the body length when the body is
    framed by Content-Length (0 when there is no body) and None when it is chunked.
    """

    __slots__ = (
        "chunked",
        "content_length",
        "expect_continue",
        "headers",
        "keep_alive",
        "method",
        "target",
        "version",
    )

    def __init__(
        self,
        method: bytes,
        target: bytes,
        version: bytes,
        headers: list[tuple[bytes, bytes]],
        keep_alive: bool = True,
        expect_continue: bool = False,
        content_length: int | None = 0,
        chunked: bool = False,
    ) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.content_length = content_length
        self.chunked = chunked

    def get(self, name: bytes, default: bytes | None = None) -> bytes | None:
        """The first value of header ``name`` (lower-case), or ``default``."""
        for key, value in self.headers:
            if key == name:
                return value
        return default

    def get_all(self, name: bytes) -> list[bytes]:
        """Every value of header ``name`` (lower-case), in wire order."""
        return [value for key, value in self.headers if key == name]

    def __repr__(self) -> str:
        return (
            f"RequestHead(method={self.method!r}, target={self.target!r}, "
            f"version={self.version!r}, headers={self.headers!r}, "
            f"keep_alive={self.keep_alive}, expect_continue={self.expect_continue}, "
            f"content_length={self.content_length}, chunked={self.chunked})"
        )


class Data:
    """A piece of the request body (never empty)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __eq__(self, other: object) -> bool:
        return type(other) is Data and other.data == self.data

    __hash__ = None  # type: ignore[assignment]  # mutable-by-convention value object

    def __repr__(self) -> str:
        return f"Data({self.data!r})"


class EndOfMessage:
    """The end of a request body; ``trailers`` are the chunked trailer fields, names lower-case.

    The shared ``END_OF_MESSAGE`` instance is returned when there are no trailers: do not
    mutate its list.
    """

    __slots__ = ("trailers",)

    def __init__(self, trailers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.trailers = [] if trailers is None else trailers

    def __eq__(self, other: object) -> bool:
        return type(other) is EndOfMessage and other.trailers == self.trailers

    __hash__ = None  # type: ignore[assignment]  # as above: mutable-by-convention

    def __repr__(self) -> str:
        return f"EndOfMessage({self.trailers!r})"


class _NeedData:
    """Type of the ``NEED_DATA`` sentinel: the parser needs more bytes before the next event."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()
END_OF_MESSAGE = EndOfMessage([])

# What RequestParser.next_event returns; compare the sentinel with ``is NEED_DATA``.
Event: TypeAlias = RequestHead | Data | EndOfMessage | _NeedData
