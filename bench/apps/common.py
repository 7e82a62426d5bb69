"""Helpers shared by the peer apps: routing rules, safe file lookup, gzip.

Every peer serves the same three things:

* ``GET /echo/{s}`` -> 200 ``text/plain`` body ``s``;
* ``GET /files/{name}`` -> the file from the served directory;
* files ending in ``.html`` are sent gzip-compressed (zlib level 6, compressed on
  every request, like a dynamic page) when ``Accept-Encoding`` allows gzip.

The apps run from ``bench/.venv`` as plain scripts (this folder is on ``sys.path``),
so this module uses the standard library only.
"""

from __future__ import annotations

import argparse
import os
import zlib
from pathlib import Path

ECHO_PREFIX = "/echo/"
FILES_PREFIX = "/files/"
GZIP_LEVEL = 6
HTML_TYPE = "text/html; charset=utf-8"
BINARY_TYPE = "application/octet-stream"
TEXT_TYPE = "text/plain; charset=utf-8"


def www_dir(default: str | None = None) -> Path:
    """The served directory: ``default`` or the ``BENCH_WWW`` environment variable."""
    return Path(default or os.environ.get("BENCH_WWW", ".")).resolve()


def resolve_file(directory: Path, name: str) -> Path | None:
    """The regular file ``name`` directly inside ``directory``, or None."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        return None
    path = directory / name
    return path if path.is_file() else None


def content_type(path: Path) -> str:
    return HTML_TYPE if path.suffix == ".html" else BINARY_TYPE


def wants_gzip(path: Path, accept_encoding: str | None) -> bool:
    """True when ``path`` is an HTML page and the client accepts gzip."""
    if path.suffix != ".html" or not accept_encoding:
        return False
    for item in accept_encoding.split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def gzip_bytes(data: bytes) -> bytes:
    """gzip-wrapped deflate at ``GZIP_LEVEL`` (what nginx's gzip module emits)."""
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush()


def parse_args(doc: str | None) -> argparse.Namespace:
    """The command line every peer app takes: --host, --port, --directory, --log."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--directory", default=".")
    parser.add_argument("--log", default=None)
    return parser.parse_args()
