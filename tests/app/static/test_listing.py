"""Unit tests for reactor.app.static.listing: collection rules, HTML/JSON rendering, Accept."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from reactor.app.static.listing import (
    Entry,
    collect,
    render_html,
    render_json,
    sort_entries,
    wants_json,
)


def test_sort_puts_directories_first_then_names() -> None:
    entries = [Entry("b.txt", False, 1, 0), Entry("z", True, 0, 0), Entry("a.txt", False, 1, 0),
               Entry("c", True, 0, 0)]
    assert [e.name for e in sort_entries(entries)] == ["c", "z", "a.txt", "b.txt"]


def test_render_html_escapes_names_and_encodes_links() -> None:
    entries = [Entry("<script>&.txt", False, 5, 0), Entry('q"uote d', True, 0, 0)]
    page = render_html("/a <b>/", entries).decode()
    assert "<script>&" not in page
    assert "&lt;script&gt;&amp;.txt" in page
    assert 'href="%3Cscript%3E%26.txt"' in page
    assert 'href="q%22uote%20d/"' in page
    assert "Index of /a &lt;b&gt;/" in page
    assert 'href="../"' in page


def test_render_html_root_has_no_parent_link() -> None:
    assert b'href="../"' not in render_html("/", [])


def test_render_json() -> None:
    doc = json.loads(render_json("/d/", [Entry("é\"x", False, 3, 0), Entry("s", True, 0, 0)]))
    assert doc == {"path": "/d/", "entries": [
        {"name": 'é"x', "type": "file", "size": 3, "mtime": "Thu, 01 Jan 1970 00:00:00 GMT"},
        {"name": "s", "type": "dir", "size": 0, "mtime": "Thu, 01 Jan 1970 00:00:00 GMT"}]}


@pytest.mark.parametrize(("accept", "expected"), [
    (None, False),
    ("application/json", True),
    ("application/json, */*;q=0.1", True),
    ("text/html, application/json", False),
    ("text/html;q=0.5, application/json", True),
    ("*/*", False),
    ("application/json;q=0", False),
    ("application/json;q=bogus", False),
])
def test_wants_json(accept: str | None, expected: bool) -> None:
    assert wants_json(None if accept is None else accept.encode()) is expected


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    (root / "f.txt").write_text("12345")
    (root / ".hidden").write_text("h")
    (tmp_path / "outside").write_text("o")
    os.symlink("f.txt", root / "link-in")
    os.symlink("../outside", root / "link-out")
    os.symlink("nowhere", root / "dangling")
    os.mkfifo(root / "fifo")
    return root


@pytest.mark.parametrize(("policy", "dotfiles", "names"), [
    ("deny-outside", False, ["d", "f.txt", "link-in"]),
    ("follow", False, ["d", "f.txt", "link-in", "link-out"]),
    ("deny", False, ["d", "f.txt"]),
    ("deny", True, ["d", ".hidden", "f.txt"]),
])
def test_collect_applies_mount_rules(tree: Path, policy: str, dotfiles: bool,
                                     names: list[str]) -> None:
    fd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
    try:
        entries = collect(fd, str(tree), str(tree), dotfiles=dotfiles, symlinks=policy)
    finally:
        os.close(fd)
    assert [e.name for e in entries] == names
    assert entries[0].name == "d" and entries[0].is_dir
    assert next(e for e in entries if e.name == "f.txt").size == 5
