"""Validators and preconditions (RFC 9110 8.8, 13): ETag, Last-Modified, If-* evaluation.

Strategy: a file's validators come from one `stat`: a strong ETag built from inode, size
and mtime_ns (a rewrite, a `touch` or a rename-into-place all change it), and Last-Modified
as an IMF-fixdate at whole seconds. `evaluate` applies RFC 9110 13.2.2 steps 1-4 in order and
answers the status to send instead of the content (304 or 412) or None to go on; If-Range
(step 5) is `range_applies`, used by the range code. `write_allowed` is steps 1-3 for PUT
and DELETE, where the file may be absent and may carry more than one current tag. Every
If-* field is read with all its lines (one comma list, `field_list`): a date or If-Range
sent twice has more than one member, is no valid value and is ignored (RFC 9110
13.1.3-13.1.5), whichever line comes first.
"""

from __future__ import annotations

import os
import time
from calendar import timegm

from reactor.app.types import Headers

_DAYS = (b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun")
_MONTHS = (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct",
           b"Nov", b"Dec")
_MONTH_NUMBER = {name.lower(): index + 1 for index, name in enumerate(_MONTHS)}


def make_etag(info: os.stat_result, suffix: bytes = b"") -> bytes:
    """A strong entity-tag, e.g. `"1a2b-400-17c9..."`; `suffix` marks another encoding."""
    return b'"%x-%x-%x%s"' % (info.st_ino, info.st_size, info.st_mtime_ns, suffix)


def http_date(seconds: int) -> bytes:
    """IMF-fixdate (RFC 9110 5.6.7): `Sun, 06 Nov 1994 08:49:37 GMT`."""
    t = time.gmtime(seconds)
    return b"%s, %02d %s %04d %02d:%02d:%02d GMT" % (
        _DAYS[t.tm_wday], t.tm_mday, _MONTHS[t.tm_mon - 1], t.tm_year, t.tm_hour, t.tm_min,
        t.tm_sec)


def parse_http_date(value: bytes) -> int | None:
    """Seconds since the epoch for any of the three HTTP-date forms, or None when invalid.

    RFC 9110 5.6.7: recipients accept IMF-fixdate, the obsolete RFC 850 form
    (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime (`Sun Nov  6 08:49:37 1994`).
    """
    parts = value.replace(b",", b" ").split()
    try:
        if len(parts) == 6 and parts[5] == b"GMT":  # IMF-fixdate
            day, month, year, clock = parts[1], parts[2], parts[3], parts[4]
        elif len(parts) == 4 and parts[3] == b"GMT":  # RFC 850
            day, month, year = parts[1].split(b"-")
            clock = parts[2]
            year = b"%d" % _rfc850_year(int(year))
        elif len(parts) == 5:  # asctime
            month, day, clock, year = parts[1], parts[2], parts[3], parts[4]
        else:
            return None
        return _timestamp(day, month, year, clock)
    except ValueError:
        return None


def _rfc850_year(two_digits: int) -> int:
    # RFC 9110 5.6.7: a two-digit year more than 50 years in the future is in the past.
    this_year = time.gmtime().tm_year
    year = this_year - this_year % 100 + two_digits
    return year - 100 if year > this_year + 50 else year


def _timestamp(day: bytes, month: bytes, year: bytes, clock: bytes) -> int | None:
    number = _MONTH_NUMBER.get(month.lower())
    hms = clock.split(b":")
    if number is None or len(hms) != 3 or not all(p.isdigit() for p in (day, year, *hms)):
        return None
    d, y, hh, mm, ss = int(day), int(year), int(hms[0]), int(hms[1]), int(hms[2])
    if not (1 <= d <= 31 and hh < 24 and mm < 60 and ss < 61 and len(year) == 4):
        return None
    return timegm((y, number, d, hh, mm, min(ss, 59), 0, 0, 0))


def parse_etags(value: bytes) -> list[tuple[bool, bytes]] | None:
    """An If-Match/If-None-Match list as `(weak, opaque-tag)` pairs; None means `*`.

    Members that are not entity-tags are skipped, so a garbage list matches nothing.
    """
    value = value.strip()
    if value == b"*":
        return None
    tags: list[tuple[bool, bytes]] = []
    for member in value.split(b","):
        member = member.strip()
        weak = member[:2] == b"W/"
        if weak:
            member = member[2:]
        if len(member) >= 2 and member[:1] == b'"' and member[-1:] == b'"' \
                and b'"' not in member[1:-1]:
            tags.append((weak, member))
    return tags


def _matches(header: bytes, etag: bytes, *, strong: bool) -> bool:
    tags = parse_etags(header)
    if tags is None:
        return True  # `*`: any current representation
    # Strong comparison (If-Match): neither side weak. Weak (If-None-Match): opaque equal.
    return any(tag == etag and not (strong and weak) for weak, tag in tags)


def field_list(headers: Headers, name: bytes) -> bytes | None:
    """A list-valued field sent on several lines, as one comma list (RFC 9110 5.3)."""
    values = headers.get_all(name)
    if not values:
        return None
    return values[0] if len(values) == 1 else b", ".join(values)


def evaluate(method: str, headers: Headers, etag: bytes, mtime: int | None) -> int | None:
    """RFC 9110 13.2.2 steps 1-4 for an existing resource: 412, 304, or None to go on.

    A representation without validators (a directory listing) passes `b""` and None: then
    only `*` matches a tag list, and the date conditions are ignored (13.1.3, 13.1.4: no
    modification date to compare with)."""
    if_match = field_list(headers, b"if-match")
    if if_match is not None:
        if not _matches(if_match, etag, strong=True):
            return 412
    elif mtime is not None:
        since = field_list(headers, b"if-unmodified-since")
        if since is not None:
            date = parse_http_date(since)
            if date is not None and mtime > date:
                return 412
    safe = method in ("GET", "HEAD")
    if_none_match = field_list(headers, b"if-none-match")
    if if_none_match is not None:
        if _matches(if_none_match, etag, strong=False):
            return 304 if safe else 412
    elif safe and mtime is not None:
        since = field_list(headers, b"if-modified-since")
        if since is not None:
            date = parse_http_date(since)
            if date is not None and mtime <= date:
                return 304
    return None


def write_allowed(headers: Headers, etags: tuple[bytes, ...], mtime: int | None) -> bool:
    """RFC 9110 13.2.2 steps 1-3 for a write: False means 412.

    `etags` are the entity-tags the file is currently served with (empty when there is no
    file; `mtime` is then None). If-Match compares strongly and `*` needs a file;
    If-None-Match compares weakly and `*` needs no file; If-Unmodified-Since counts only
    without If-Match and with a file (13.1.4).
    """
    if_match = field_list(headers, b"if-match")
    if if_match is not None:
        if not any(_matches(if_match, etag, strong=True) for etag in etags):
            return False
    elif mtime is not None:
        since = field_list(headers, b"if-unmodified-since")
        if since is not None:
            date = parse_http_date(since)
            if date is not None and mtime > date:
                return False
    if_none_match = field_list(headers, b"if-none-match")
    return if_none_match is None or not any(
        _matches(if_none_match, etag, strong=False) for etag in etags)


def range_applies(headers: Headers, etag: bytes, last_modified: bytes,
                  now: float | None = None) -> bool:
    """RFC 9110 13.1.5 If-Range: a strong ETag match, or the exact Last-Modified date when
    that date is a strong validator (8.8.2.2: at least a second in the past, so a second
    write within the same second cannot hide behind it)."""
    if_range = field_list(headers, b"if-range")
    if if_range is None:
        return True
    if_range = if_range.strip()
    if if_range[:1] == b'"':
        return if_range == etag  # a weak tag (W/"...") never matches: strong comparison
    if if_range[:2] == b"W/":
        return False
    date = parse_http_date(if_range)
    if date is None or date != parse_http_date(last_modified):
        return False
    return (time.time() if now is None else now) >= date + 1
