"""Sans-IO protocol layer: HTTP/1.1 request parsing and response serialization.

Bytes in, events out, bytes back; nothing here touches a socket, a thread or a logger.
"""

from __future__ import annotations

from reactor.proto.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from reactor.proto.events import (
    END_OF_MESSAGE,
    NEED_DATA,
    Data,
    EndOfMessage,
    Event,
    RequestHead,
)
from reactor.proto.http1 import (
    CONTINUE_100,
    LAST_CHUNK,
    RequestParser,
    encode_chunk,
    header_lines,
    reason_phrase,
    response_head,
    split_absolute_form,
    status_line,
)

__all__ = [
    "CONTINUE_100",
    "END_OF_MESSAGE",
    "LAST_CHUNK",
    "NEED_DATA",
    "Data",
    "EndOfMessage",
    "Event",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "RequestHead",
    "RequestParser",
    "encode_chunk",
    "header_lines",
    "reason_phrase",
    "response_head",
    "split_absolute_form",
    "status_line",
]
