"""`StaticMount`: one document root's settings, validated once at start-up."""

from __future__ import annotations

import os
import re

from reactor.app.static.mime import MimeMap
from reactor.app.static.paths import SYMLINK_POLICIES
from reactor.app.static.ranges import DEFAULT_MAX_RANGES

# RFC 9110 8.3.1: type "/" subtype, then `; name=value` parameters (a token or a quoted
# string), so an override can say `text/html; charset=iso-8859-1` for legacy pages.
_TOKEN = r"[A-Za-z0-9!#$%&'*+.^_`|~-]+"
_QUOTED = r'"(?:[\t\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"'
_MEDIA_TYPE = re.compile(rf"{_TOKEN}/{_TOKEN}(?:[ \t]*;[ \t]*{_TOKEN}=(?:{_TOKEN}|{_QUOTED}))*")
_HEADER_VALUE = re.compile(r"[\x20-\x7e]*")


class MountError(ValueError):
    """A mount that cannot be served (a configuration error, reported at start-up)."""


class StaticMount:
    """Serve the directory `root` under the URL path `prefix` (GET, HEAD; PUT, DELETE if asked).

    - `index`: file served for a directory URL ending in `/` (None: no index file).
    - `listing`: without an index file, list the directory (HTML, or JSON by `Accept`).
    - `symlinks`: "deny-outside" (default: a link may not lead out of the root),
      "follow" (any link), or "deny" (a link anywhere in the path is a 404).
    - `dotfiles`: serve names starting with "." (default: hidden, 404).
    - `cache_control`: the Cache-Control value for files (None: none sent).
    - `mime_overrides`: extension → media type, e.g. {".log": "text/plain"}; a type with
      parameters is sent as given (`text/html; charset=iso-8859-1`), else text types get
      `; charset=utf-8`.
    - `max_ranges`: a Range header with more range-specs than this is ignored (200).
    - `uploads`: accept PUT and DELETE of files under the root (default: 405); see
      `reactor.app.static.upload`.
    """

    __slots__ = ("cache_control", "dotfiles", "index", "listing", "max_ranges", "mime",
                 "mime_overrides", "prefix", "root", "symlinks", "uploads")

    def __init__(self, prefix: str, root: str | os.PathLike[str], *,
                 index: str | None = "index.html", listing: bool = False,
                 symlinks: str = "deny-outside", dotfiles: bool = False,
                 cache_control: str | None = None,
                 mime_overrides: dict[str, str] | None = None,
                 max_ranges: int = DEFAULT_MAX_RANGES, uploads: bool = False) -> None:
        self.prefix = _check_prefix(prefix)
        self.root = os.path.abspath(os.fspath(root))
        if not os.path.isdir(self.root):
            raise MountError(f"static mount {prefix!r}: root {self.root!r} is not a directory")
        if index is not None and (not index or "/" in index or "\\" in index
                                  or index in (".", "..")):
            raise MountError(f"static mount {prefix!r}: index {index!r} must be a file name")
        if symlinks not in SYMLINK_POLICIES:
            raise MountError(f"static mount {prefix!r}: symlinks must be one of "
                             f"{', '.join(SYMLINK_POLICIES)}, not {symlinks!r}")
        if cache_control is not None and not _HEADER_VALUE.fullmatch(cache_control):
            raise MountError(f"static mount {prefix!r}: cache_control must be printable ASCII")
        if max_ranges < 1:
            raise MountError(f"static mount {prefix!r}: max_ranges must be at least 1")
        for ext, kind in (mime_overrides or {}).items():
            if not ext or "/" in ext or not _MEDIA_TYPE.fullmatch(kind):
                raise MountError(f"static mount {prefix!r}: bad MIME override {ext!r}: {kind!r}")
        self.index = index
        self.listing = listing
        self.symlinks = symlinks
        self.dotfiles = dotfiles
        self.cache_control = cache_control
        self.mime_overrides = dict(mime_overrides or {})
        self.max_ranges = max_ranges
        self.uploads = uploads
        self.mime = MimeMap(self.mime_overrides)

    def __repr__(self) -> str:
        return f"StaticMount({self.prefix!r}, {self.root!r})"


def _check_prefix(prefix: str) -> str:
    """`/` or `/a/b` (no trailing slash, no dot segments, no `{`): the router's form."""
    if (not prefix.startswith("/") or not prefix.isascii() or not prefix.isprintable()
            or any(c in prefix for c in " {}?#%\\")):
        raise MountError(f"static mount prefix {prefix!r} must be a plain path starting with /")
    trimmed = prefix.rstrip("/") or "/"
    if any(part in (".", "..") for part in trimmed.split("/")) or "//" in trimmed:
        raise MountError(f"static mount prefix {prefix!r} has empty or dot segments")
    return trimmed
