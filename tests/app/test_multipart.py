"""The streaming multipart/form-data parser, on edge cases a browser or a client may send."""

from __future__ import annotations

import io

import pytest

from reactor.app.multipart import BLOCK_BYTES, MultipartError, boundary_of, parse_multipart


def body(*parts: bytes, boundary: bytes = b"XyZ", preamble: bytes = b"",
         epilogue: bytes = b"") -> bytes:
    out = preamble
    for part in parts:
        out += b"--" + boundary + b"\r\n" + part + b"\r\n"
    return out + b"--" + boundary + b"--\r\n" + epilogue


def test_fields_files_preamble_and_epilogue() -> None:
    data = body(
        b'Content-Disposition: form-data; name="a"\r\n\r\none\r\ntwo',
        b'Content-Disposition: form-data; name="a"\r\n\r\n',
        b'Content-Disposition: form-data; name="f"; filename*=UTF-8\'\'r%C3%A9sum%C3%A9.txt'
        b'\r\nContent-Type: text/plain\r\n\r\n--XyZ is not a delimiter here',
        b'Content-Disposition: form-data; name="empty"; filename=""\r\n\r\n',
        preamble=b"ignored preamble\r\n", epilogue=b"ignored epilogue")
    form = parse_multipart(io.BytesIO(data), b"XyZ")
    assert form.get_all("a") == ["one\r\ntwo", ""]
    upload = form.files["f"]
    assert (upload.filename, upload.content_type) == ("résumé.txt", "text/plain")
    assert upload.read() == b"--XyZ is not a delimiter here"
    assert form.files["empty"].size == 0
    form.close()


def test_a_delimiter_split_across_reads() -> None:
    content = b"a" * (BLOCK_BYTES - 3)  # the delimiter straddles the first block's end
    data = body(b'Content-Disposition: form-data; name="f"; filename="x"\r\n\r\n' + content)
    form = parse_multipart(io.BytesIO(data), b"XyZ")
    assert form.files["f"].read() == content
    form.close()


@pytest.mark.parametrize("data", [
    b"no boundary at all",
    b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nunterminated",
    b"--XyZ\r\nContent-Disposition: attachment\r\n\r\nx\r\n--XyZ--",
    b"--XyZ\r\nno colon here\r\n\r\nx\r\n--XyZ--",
    b"--XyZ junk\r\n",
])
def test_malformed_bodies_raise(data: bytes) -> None:
    with pytest.raises(MultipartError):
        parse_multipart(io.BytesIO(data), b"XyZ")


def test_boundary_parameter() -> None:
    assert boundary_of(b'multipart/form-data; charset=utf-8; boundary="a b"') == b"a b"
    assert boundary_of(b"multipart/form-data; BOUNDARY=xyz") == b"xyz"
    assert boundary_of(b"multipart/form-data") is None


def test_a_browsers_escapes_in_names_are_decoded() -> None:
    """Chromium's bytes for FormData field 'say "hi"\\r\\nx' and File 'my "best"\\nphoto.txt':
    `"`, CR and LF arrive as %22, %0D, %0A (WHATWG HTML), nothing else escaped."""
    data = body(
        b'Content-Disposition: form-data; name="say %22hi%22%0D%0Ax"\r\n\r\nv"1',
        b'Content-Disposition: form-data; name="up"; filename="my %22best%22%0aphoto 100%.txt"'
        b'\r\nContent-Type: text/plain\r\n\r\ndata',
        b'Content-Disposition: form-data; name="curl"; filename="a \\"q\\" %22.txt"\r\n\r\nc',
        b'Content-Disposition: form-data; name="ext"; filename*=UTF-8\'\'%2522.txt\r\n\r\ne')
    form = parse_multipart(io.BytesIO(data), b"XyZ")
    assert form.items() == [('say "hi"\r\nx', 'v"1')]
    assert form.files["up"].filename == 'my "best"\nphoto 100%.txt'
    assert form.files["curl"].filename == 'a "q" %22.txt'  # backslash-quoted: taken as sent
    assert form.files["ext"].filename == "%22.txt"  # an RFC 8187 value is decoded once
    form.close()


def test_a_boundary_inside_a_preamble_line_is_no_delimiter_wherever_the_reads_end() -> None:
    """`x--XyZ` is preamble text (a delimiter starts the body or follows a CRLF), also when
    a read ends just before its `--XyZ`: the fake part after it must not appear."""
    fake = b'x--XyZ\r\nContent-Disposition: form-data; name="injected"\r\n\r\nx\r\n'
    real = body(b'Content-Disposition: form-data; name="a"\r\n\r\none')
    for pad in (0, 100, BLOCK_BYTES - len(b"\r\n--XyZ") - 1):
        form = parse_multipart(io.BytesIO(b"p" * pad + fake + real), b"XyZ")
        assert form.items() == [("a", "one")], pad


def test_a_part_without_header_lines_is_refused_whatever_the_reads() -> None:
    """A blank line right after the delimiter: the part has no headers (its content is
    `Content-Disposition: ...`), so no name: a 400 whether the content came in one read or
    the read ended before its own blank line."""
    lines = (b'Content-Disposition: form-data; name="a"\r\n\r\nX',
             b'Content-Disposition: form-data; name="b"\r\n\r\nY')
    for pad in (0, BLOCK_BYTES - 30):
        data = body(b'Content-Disposition: form-data; name="p"\r\n\r\n' + b"p" * pad,
                    b"\r\n" + lines[0], lines[1])
        with pytest.raises(MultipartError, match="without Content-Disposition"):
            parse_multipart(io.BytesIO(data), b"XyZ")


class CountingBody(io.RawIOBase):
    """`size` bytes of `fill` after `head`, made as they are read; counts what was read."""

    def __init__(self, head: bytes, fill: bytes, size: int) -> None:
        self.head, self.fill, self.left, self.read_bytes = head, fill, size, 0

    def read(self, size: int = -1) -> bytes:
        if self.head:
            out, self.head = self.head, b""
        else:
            out = self.fill * min(size, self.left)
            self.left -= len(out)
        self.read_bytes += len(out)
        return out


def test_a_delimiter_never_followed_by_a_crlf_is_refused_without_reading_the_body() -> None:
    """`--XyZ` then megabytes without a CRLF: refused after a block, not read into memory
    whole (and quadratically: 64 MiB, under a raised max_body_bytes, held a pool thread 19 s)."""
    source = CountingBody(b"--XyZ", b"a", 4 << 20)
    with pytest.raises(MultipartError, match="malformed multipart delimiter line"):
        parse_multipart(source, b"XyZ")
    assert source.read_bytes <= 2 * BLOCK_BYTES
    # transport padding (spaces, tabs) before the CRLF is still taken
    data = body(b'Content-Disposition: form-data; name="a"\r\n\r\none')
    data = data.replace(b"--XyZ\r\n", b"--XyZ \t \r\n", 1)
    assert parse_multipart(io.BytesIO(data), b"XyZ").items() == [("a", "one")]


def test_part_headers_are_limited_in_all_not_only_per_part() -> None:
    """1,000 parts of 16 KiB headers each (`name=a;;;;...`) cost a pool thread ~1.5 s of CPU
    for one 16 MiB body, a plain upload of that size ~30 ms: the parts' header lines are
    limited to 256 KiB in all."""
    crafted = b'Content-Disposition: form-data; name="a"' + b";" * 15000 + b"\r\n\r\nv"
    with pytest.raises(MultipartError, match="part headers too large"):
        parse_multipart(io.BytesIO(body(*[crafted] * 1000)), b"XyZ")
    # what browsers send: ~150 bytes a part, up to the 1,000 parts allowed
    usual = (b'Content-Disposition: form-data; name="photos[]"; filename="IMG_20231102_1234'
             b'56789_HDR.jpg"\r\nContent-Type: image/jpeg\r\n\r\nv')
    form = parse_multipart(io.BytesIO(body(*[usual] * 1000)), b"XyZ")
    assert len(form.files.get_all("photos[]")) == 1000
    form.close()


def test_one_parts_headers_are_limited_wherever_the_reads_end() -> None:
    # 20 KiB of header lines arrive in the same 64 KiB read as their blank line: still over
    # the 16 KiB a part may have
    big = b'Content-Disposition: form-data; name="a"\r\nX-Pad: ' + b"p" * 20000 + b"\r\n\r\nv"
    with pytest.raises(MultipartError, match="part headers too large"):
        parse_multipart(io.BytesIO(body(big)), b"XyZ")
    fits = b'Content-Disposition: form-data; name="a"\r\nX-Pad: ' + b"p" * 16000 + b"\r\n\r\nv"
    assert parse_multipart(io.BytesIO(body(fits)), b"XyZ").get("a") == "v"
