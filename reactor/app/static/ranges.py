"""Byte ranges (RFC 9110 14): parse `Range`, coalesce, frame `multipart/byteranges`.

Strategy: `parse_ranges` answers one of three things — None: ignore the header and send
the whole representation (200); `[]`: nothing satisfiable (416); or a sorted list of
inclusive `(first, last)` pairs with overlapping and adjacent ranges merged, so a request
for the same bytes many times over costs one part (RFC 9110 14.6 allows coalescing
regardless of the requested order), in the order the client asked for them: a merged range
takes the place of its first member (14.6: parts SHOULD follow the order of the
range-specs, as nginx sends them; a client asking `bytes=-22,0-99` for a ZIP's end record
first gets it first). More than `max_ranges` range-specs is treated as
abusive and ignored (200 with the full body): always a correct answer, and the cheapest.
A syntactically invalid header is ignored too (RFC 9110 14.2), as is any Range on an empty
representation (its only satisfiable form has no byte to describe in Content-Range).
"""

from __future__ import annotations

from reactor.app.types import FileBody

DEFAULT_MAX_RANGES = 16


def parse_ranges(header: bytes, size: int, *, max_ranges: int = DEFAULT_MAX_RANGES
                 ) -> list[tuple[int, int]] | None:
    """The satisfiable ranges of `header` for a representation of `size` bytes (see above)."""
    unit, eq, specs = header.partition(b"=")
    if not eq or unit.strip().lower() != b"bytes" or size <= 0:
        return None
    wanted: list[tuple[int, int]] = []
    count = 0
    for spec in specs.split(b","):
        spec = spec.strip(b" \t")
        if not spec:
            continue  # empty list elements are allowed (RFC 9110 5.6.1)
        count += 1
        if count > max_ranges:
            return None
        parsed = _parse_spec(spec)
        if parsed is None:
            return None
        first, last = parsed
        if first is None:  # suffix-range: the last `last` bytes
            if last is not None and last > 0:
                wanted.append((max(size - last, 0), size - 1))
        elif first < size:
            wanted.append((first, size - 1 if last is None else min(last, size - 1)))
    if count == 0:
        return None
    return coalesce(wanted)


def _parse_spec(spec: bytes) -> tuple[int | None, int] | tuple[int, int | None] | None:
    """`first-last`, `first-` or `-suffix` as numbers; None when it is not a range-spec."""
    first, dash, last = spec.partition(b"-")
    if not dash or (first and not _is_digits(first)) or (last and not _is_digits(last)):
        return None
    if not first:
        return (None, _number(last)) if last else None
    start = _number(first)
    if not last:
        return start, None
    end = _number(last)
    return (start, end) if end >= start else None  # last < first: invalid (RFC 9110 14.1.1)


def _is_digits(text: bytes) -> bool:
    return text.isdigit() and text.isascii()


def _number(digits: bytes) -> int:
    # Beyond any file size; also keeps int() clear of its 4300-digit limit (a ValueError).
    return int(digits) if len(digits) <= 19 else 1 << 64


def coalesce(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge ranges that overlap or touch; the result keeps the order of `ranges`, each
    merged range where the first of its members was."""
    if len(ranges) < 2:
        return list(ranges)
    merged: list[list[int]] = []  # [first, last, position of the earliest member]
    for position, (first, last) in sorted(enumerate(ranges), key=lambda item: item[1]):
        if merged and first <= merged[-1][1] + 1:
            group = merged[-1]
            group[1] = max(group[1], last)
            group[2] = min(group[2], position)
        else:
            merged.append([first, last, position])
    merged.sort(key=lambda group: group[2])
    return [(first, last) for first, last, _position in merged]


def content_range(first: int, last: int, size: int) -> bytes:
    return b"bytes %d-%d/%d" % (first, last, size)


def unsatisfied_range(size: int) -> bytes:
    return b"bytes */%d" % size


class Multipart:
    """The framing of a `multipart/byteranges` body (RFC 9110 14.6, RFC 2046 5.1).

    Layout, byte for byte: `--B CRLF headers CRLF CRLF data` for the first part,
    `CRLF --B CRLF headers CRLF CRLF data` for each next one, then `CRLF --B-- CRLF`.
    """

    __slots__ = ("boundary", "content_type", "size")

    def __init__(self, boundary: bytes, content_type: bytes, size: int) -> None:
        self.boundary = boundary
        self.content_type = content_type
        self.size = size

    @property
    def media_type(self) -> bytes:
        return b"multipart/byteranges; boundary=" + self.boundary

    def part_head(self, index: int, first: int, last: int) -> bytes:
        lead = b"--" if index == 0 else b"\r\n--"
        return b"%s%s\r\nContent-Type: %s\r\nContent-Range: %s\r\n\r\n" % (
            lead, self.boundary, self.content_type, content_range(first, last, self.size))

    @property
    def closing(self) -> bytes:
        return b"\r\n--%s--\r\n" % self.boundary

    def from_bytes(self, data: bytes, ranges: list[tuple[int, int]]) -> bytes:
        """The whole body from the representation held in memory."""
        out = [piece for index, (first, last) in enumerate(ranges)
               for piece in (self.part_head(index, first, last), data[first:last + 1])]
        out.append(self.closing)
        return b"".join(out)

    def from_files(self, files: list[FileBody], ranges: list[tuple[int, int]]
                   ) -> list[bytes | FileBody]:
        """Parts for a `PartsBody`: one `FileBody` per range (each owns its own fd)."""
        parts: list[bytes | FileBody] = []
        for index, ((first, last), body) in enumerate(zip(ranges, files, strict=True)):
            parts.append(self.part_head(index, first, last))
            parts.append(body)
        parts.append(self.closing)
        return parts
