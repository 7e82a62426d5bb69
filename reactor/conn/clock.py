"""The `Date` header value, formatted once per second (RFC 9110 6.6.1, IMF-fixdate)."""

from __future__ import annotations

import time
from email.utils import formatdate

_cached_second = -1
_cached_value = b""


def http_date() -> bytes:
    global _cached_second, _cached_value
    now = int(time.time())
    if now != _cached_second:
        _cached_value = formatdate(now, usegmt=True).encode("ascii")
        _cached_second = now
    return _cached_value


_lines_second = -1
_lines_name = b""
_lines_value = b""


def server_lines(server_name: bytes) -> bytes:
    """`Server: …\r\nDate: …\r\n`, the two fields every response carries, built once a
    second."""
    global _lines_second, _lines_name, _lines_value
    now = int(time.time())
    if now != _lines_second or server_name is not _lines_name:
        _lines_value = b"Server: %s\r\nDate: %s\r\n" % (server_name, http_date())
        _lines_second, _lines_name = now, server_name
    return _lines_value
