"""What all HTTP connections share: limits and timeouts, the log sink's interface, records."""

from __future__ import annotations

from typing import Any, Protocol

from reactor.app.types import Request, Response
from reactor.proto import RequestParser

# What app code run on the loop may raise that is its failure (a logged 500, or a 1011 for a
# WebSocket handler), not the server's: any Exception, and SystemExit (`sys.exit()` in a
# handler, or a library's, such as argparse's), which the pool already hands back as a
# failure. Left alone it would end the loop, and the server with it.
APP_ERRORS = (Exception, SystemExit)


class HttpSettings:
    """Limits and timeouts in force for new requests (replaced whole on reload)."""

    __slots__ = ("body_s", "header_s", "keepalive_s", "max_body_bytes", "max_header_bytes",
                 "max_header_fields", "max_request_line", "write_s")

    def __init__(self, *, max_request_line: int = 8192, max_header_bytes: int = 32768,
                 max_header_fields: int = 100, max_body_bytes: int = 16 * 1024 * 1024,
                 header_s: float = 20.0, keepalive_s: float = 75.0, body_s: float = 60.0,
                 write_s: float = 60.0) -> None:
        self.max_request_line = max_request_line
        self.max_header_bytes = max_header_bytes
        self.max_header_fields = max_header_fields
        self.max_body_bytes = max_body_bytes
        self.header_s = header_s
        self.keepalive_s = keepalive_s
        self.body_s = body_s
        self.write_s = write_s

    def new_parser(self) -> RequestParser:
        return RequestParser(max_line_bytes=self.max_request_line,
                             max_header_bytes=self.max_header_bytes,
                             max_header_fields=self.max_header_fields,
                             max_body_bytes=self.max_body_bytes)


class AccessRecord:
    """What the access log needs of one finished exchange; the log sink renders it.

    Handing over the objects (not a dict of 18 rendered fields) keeps the per-request cost
    of logging in one place: the sink formats the line straight from these attributes.
    """

    __slots__ = ("bytes_in", "bytes_out", "conn_id", "duration_ms", "queue_ms", "request",
                 "response")

    def __init__(self, request: Request, response: Response, conn_id: int, bytes_out: int,
                 bytes_in: int, queue_ms: float | None) -> None:
        self.request = request
        self.response = response
        self.conn_id = conn_id
        self.bytes_out = bytes_out
        self.bytes_in = bytes_in
        self.queue_ms = queue_ms
        self.duration_ms = 0.0


class RequestLog(Protocol):
    """Where connections report finished requests and errors (implemented by ops/logging)."""

    def request(self, record: AccessRecord) -> None: ...
    def rejected(self, fields: dict[str, Any]) -> None: ...
    def error(self, event: str, exc: BaseException | None, fields: dict[str, Any]) -> None: ...
