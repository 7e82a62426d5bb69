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
