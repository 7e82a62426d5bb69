"""Directory listings: collect the visible entries, render them as HTML or JSON.

Strategy: `collect` (blocking, in the pool) scans an open directory fd and applies the
mount's rules — dotfiles hidden unless allowed, symlinks shown only where the policy would
serve them, names that are not UTF-8 skipped (they could not be requested). `render_html`
and `render_json` are pure: directories first, then files, each sorted by name; names are
HTML-escaped (text) and percent-encoded (links) or JSON-encoded.
"""

from __future__ import annotations

import html
import json
import os
import stat
from urllib.parse import quote

from reactor.app.static.conditional import http_date
from reactor.app.static.paths import is_inside


class Entry:
    """One listed name: directory or file, size and mtime (seconds)."""

    __slots__ = ("is_dir", "mtime", "name", "size")

    def __init__(self, name: str, is_dir: bool, size: int, mtime: int) -> None:
        self.name = name
        self.is_dir = is_dir
        self.size = size
        self.mtime = mtime

    def __repr__(self) -> str:
        return f"Entry({self.name!r}{'/' if self.is_dir else ''})"


def collect(dir_fd: int, dir_path: str, root: str, *, dotfiles: bool, symlinks: str
            ) -> list[Entry]:
    """The entries of the open directory that this mount would serve."""
    entries: list[Entry] = []
    with os.scandir(dir_fd) as scan:
        for item in scan:
            name = item.name
            if (name[0] == "." and not dotfiles) or not _is_utf8(name):
                continue
            try:
                if item.is_symlink() and not _link_allowed(
                        symlinks, root, os.path.join(dir_path, name)):
                    continue
                info = item.stat()  # follows a symlink the policy allows
            except OSError:
                continue  # vanished, or a dangling link
            if stat.S_ISDIR(info.st_mode):
                entries.append(Entry(name, True, 0, int(info.st_mtime)))
            elif stat.S_ISREG(info.st_mode):
                entries.append(Entry(name, False, info.st_size, int(info.st_mtime)))
    return sort_entries(entries)


def _link_allowed(policy: str, root: str, path: str) -> bool:
    if policy == "deny":
        return False
    return policy == "follow" or is_inside(root, path)


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # surrogate escapes stand for undecodable bytes
        return False
    return True


def sort_entries(entries: list[Entry]) -> list[Entry]:
    return sorted(entries, key=lambda e: (not e.is_dir, e.name))


def render_html(url_path: str, entries: list[Entry]) -> bytes:
    """An HTML page listing `entries` of the directory at `url_path` (decoded, ends in /)."""
    title = html.escape(f"Index of {url_path}")
    rows = []
    if url_path != "/":
        rows.append('<tr><td><a href="../">../</a></td><td></td><td></td></tr>')
    for entry in entries:
        suffix = "/" if entry.is_dir else ""
        href = html.escape(quote(entry.name) + suffix, quote=True)
        text = html.escape(entry.name + suffix)
        size = "-" if entry.is_dir else str(entry.size)
        date = http_date(entry.mtime).decode("ascii")
        rows.append(f'<tr><td><a href="{href}">{text}</a></td><td>{size}</td>'
                    f"<td>{date}</td></tr>")
    page = (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{title}</title></head>\n<body><h1>{title}</h1>\n"
        "<table><thead><tr><th>Name</th><th>Size</th><th>Last modified</th></tr></thead>\n"
        "<tbody>\n" + "\n".join(rows) + "\n</tbody></table></body></html>\n"
    )
    return page.encode("utf-8")


def render_json(url_path: str, entries: list[Entry]) -> bytes:
    """`{"path": ..., "entries": [{"name", "type": "dir"|"file", "size", "mtime"}]}`."""
    document = {
        "path": url_path,
        "entries": [
            {"name": e.name, "type": "dir" if e.is_dir else "file", "size": e.size,
             "mtime": http_date(e.mtime).decode("ascii")}
            for e in entries
        ],
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def wants_json(accept: bytes | None) -> bool:
    """Whether `Accept` prefers application/json over HTML (ties and absence go to HTML)."""
    if not accept:
        return False
    json_q = html_q = 0.0
    for member in accept.split(b","):
        media, _, params = member.partition(b";")
        media = media.strip().lower()
        q = _q(params)
        if media == b"application/json":
            json_q = max(json_q, q)
        elif media in (b"text/html", b"text/*", b"*/*"):
            html_q = max(html_q, q * (1.0 if media == b"text/html" else 0.99))
    return json_q > html_q


def _q(params: bytes) -> float:
    for param in params.split(b";"):
        name, _, value = param.partition(b"=")
        if name.strip().lower() == b"q":
            try:
                q = float(value.strip())
            except ValueError:
                return 0.0
            return q if 0.0 <= q <= 1.0 else 0.0
    return 1.0
