"""Unit tests for reactor.app.static.mime and StaticMount validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from reactor.app.static import MountError, StaticMount
from reactor.app.static.mime import MimeMap, with_charset


@pytest.mark.parametrize(("name", "expected"), [
    ("index.html", b"text/html; charset=utf-8"),
    ("INDEX.HTM", b"text/html; charset=utf-8"),
    ("a.css", b"text/css; charset=utf-8"),
    ("a.js", b"application/javascript; charset=utf-8"),
    ("a.json", b"application/json; charset=utf-8"),
    ("a.svg", b"image/svg+xml"),
    ("a.png", b"image/png"),
    ("a.jpg", b"image/jpeg"),
    ("a.woff2", b"font/woff2"),
    ("a.webp", b"image/webp"),
    ("a.tar.gz", b"application/gzip"),
    ("page.xhtml", b"application/xhtml+xml"),  # else a browser saves it, not shows it
    ("feed.atom", b"application/atom+xml"),
    ("feed.rss", b"application/rss+xml"),
    ("a.apng", b"image/apng"),
    ("a.eot", b"application/vnd.ms-fontobject"),
    ("a.ogg", b"audio/ogg"),
    ("a.ogv", b"video/ogg"),
    ("a.flac", b"audio/flac"),
    ("a.m4a", b"audio/mp4"),
    ("a.m4v", b"video/mp4"),
    ("report.xlsx", b"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    ("letter.docx", b"application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    ("a.odt", b"application/vnd.oasis.opendocument.text"),
    ("a.7z", b"application/x-7z-compressed"),
    ("a.jar", b"application/java-archive"),
    ("segment0.ts", b"video/mp2t"),  # an HLS stream's segments
    ("page.shtml", b"text/html; charset=utf-8"),
    ("README", b"application/octet-stream"),
    ("a.unknownext", b"application/octet-stream"),
    (".bashrc", b"application/octet-stream"),
])
def test_type_for(name: str, expected: bytes) -> None:
    assert MimeMap().type_for(name) == expected


def test_overrides_apply_per_map() -> None:
    mime = MimeMap({".log": "text/plain", "js": "text/javascript", ".bin": "x-app/x"})
    assert mime.type_for("a.log") == b"text/plain; charset=utf-8"
    assert mime.type_for("a.JS") == b"text/javascript; charset=utf-8"
    assert mime.type_for("a.bin") == b"x-app/x"
    assert MimeMap().type_for("a.log") == b"application/octet-stream"


def test_with_charset_keeps_explicit_parameters() -> None:
    assert with_charset("text/plain; charset=latin-1") == b"text/plain; charset=latin-1"
    assert with_charset("image/png") == b"image/png"
    # the type is case-insensitive, a parameter's value is kept as written
    assert with_charset("Text/HTML;charset=\"ISO-8859-1\"") == b'text/html; charset="ISO-8859-1"'


def test_an_override_may_carry_parameters(tmp_path: Path) -> None:
    """A legacy Latin-1 site says so per extension; before, only type/subtype was taken, so
    its pages went out as UTF-8 (the HTTP charset wins over <meta>) and showed garbled."""
    mount = StaticMount("/", tmp_path, mime_overrides={
        ".html": "text/html; charset=iso-8859-1", ".csv": 'text/csv; header=present'})
    assert mount.mime.type_for("a.html") == b"text/html; charset=iso-8859-1"
    assert mount.mime.type_for("a.csv") == b"text/csv; header=present"


def test_mount_normalises_prefix(tmp_path: Path) -> None:
    assert StaticMount("/static/", tmp_path).prefix == "/static"
    assert StaticMount("/", tmp_path).prefix == "/"
    assert StaticMount("///", tmp_path).prefix == "/"


@pytest.mark.parametrize(("prefix", "options"), [
    ("static", {}),
    ("/a/../b", {}),
    ("/a//b", {}),
    ("/a b", {}),
    ("/{x}", {}),
    ("/é", {}),
    ("/", {"symlinks": "sometimes"}),
    ("/", {"index": "../x"}),
    ("/", {"index": ""}),
    ("/", {"cache_control": "max-age=1\r\nSet-Cookie: x"}),
    ("/", {"mime_overrides": {".x": "text/plain\r\nX: y"}}),
    ("/", {"mime_overrides": {".x": "text/plain; charset"}}),
    ("/", {"mime_overrides": {".x": "text/plain;"}}),
    ("/", {"mime_overrides": {".x": 'text/plain; charset="\u00e9"'}}),
    ("/", {"max_ranges": 0}),
])
def test_mount_rejects_bad_settings(tmp_path: Path, prefix: str, options: dict) -> None:
    with pytest.raises(MountError):
        StaticMount(prefix, tmp_path, **options)


def test_mount_root_must_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(MountError, match="not a directory"):
        StaticMount("/", tmp_path / "missing")
