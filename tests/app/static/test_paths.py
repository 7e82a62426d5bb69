"""Unit tests for reactor.app.static.paths: segment cleaning and opening under symlink policies."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reactor.app.static.paths import clean_segments, is_inside, open_under


@pytest.mark.parametrize(("decoded", "expected"), [
    (b"/", []),
    (b"", []),
    (b"/a/b.txt", ["a", "b.txt"]),
    (b"//etc/passwd", ["etc", "passwd"]),
    (b"/a/./b/", ["a", "b"]),
    (b"/caf\xc3\xa9.txt", ["café.txt"]),
    (b"/%2e%2e/x", ["%2e%2e", "x"]),  # double-encoded: a literal name, decoded only once
    (b"/a..b", ["a..b"]),
    (b"/..", None),
    (b"/a/../b", None),
    (b"/a/..", None),
    (b"/..\\etc", None),
    (b"/a\\b", None),
    (b"/a\0.txt", None),
    (b"/\xc0\xae\xc0\xae/x", None),  # overlong UTF-8 for ".."
    (b"/\xff", None),
    (b"/\xed\xa0\x80", None),  # a UTF-8-encoded surrogate
    (b"/.git/config", None),
    (b"/a/.env", None),
])
def test_clean_segments(decoded: bytes, expected: list[str] | None) -> None:
    assert clean_segments(decoded) == expected


def test_clean_segments_dotfiles_allowed_still_refuses_dotdot() -> None:
    assert clean_segments(b"/.well-known/x", dotfiles=True) == [".well-known", "x"]
    assert clean_segments(b"/../x", dotfiles=True) is None


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "dir").mkdir(parents=True)
    (root / "dir" / "f.txt").write_text("inside")
    (tmp_path / "outside.txt").write_text("outside")
    (tmp_path / "outdir").mkdir()
    (tmp_path / "outdir" / "o.txt").write_text("o")
    os.symlink("dir/f.txt", root / "link-in")
    os.symlink("../outside.txt", root / "link-out")
    os.symlink(str(tmp_path / "outdir"), root / "dir-out")
    os.symlink("dir", root / "dir-in")
    os.symlink("loop-b", root / "loop-a")
    os.symlink("loop-a", root / "loop-b")
    os.mkfifo(root / "fifo")
    return root


def _read(root: Path, segments: list[str], policy: str) -> str | None:
    opened = open_under(str(root), segments, policy)
    if opened is None:
        return None
    try:
        return "<dir>" if opened.is_dir else os.pread(opened.fd, 100, 0).decode()
    finally:
        opened.close()


@pytest.mark.parametrize(("segments", "follow", "deny_outside", "deny"), [
    (["dir", "f.txt"], "inside", "inside", "inside"),
    (["dir"], "<dir>", "<dir>", "<dir>"),
    ([], "<dir>", "<dir>", "<dir>"),
    (["link-in"], "inside", "inside", None),
    (["dir-in", "f.txt"], "inside", "inside", None),
    (["link-out"], "outside", None, None),
    (["dir-out", "o.txt"], "o", None, None),
    (["loop-a"], None, None, None),
    (["fifo"], None, None, None),
    (["missing"], None, None, None),
    (["dir", "f.txt", "x"], None, None, None),
])
def test_open_under_policies(tree: Path, segments: list[str], follow: str | None,
                             deny_outside: str | None, deny: str | None) -> None:
    assert _read(tree, segments, "follow") == follow
    assert _read(tree, segments, "deny-outside") == deny_outside
    assert _read(tree, segments, "deny") == deny


def test_root_may_itself_be_a_symlink(tree: Path, tmp_path: Path) -> None:
    alias = tmp_path / "alias"
    os.symlink(tree, alias)
    for policy in ("follow", "deny-outside", "deny"):
        assert _read(alias, ["dir", "f.txt"], policy) == "inside"
    assert _read(alias, ["link-out"], "deny-outside") is None


def test_is_inside(tree: Path) -> None:
    assert is_inside(str(tree), str(tree / "link-in"))
    assert not is_inside(str(tree), str(tree / "link-out"))
    assert is_inside(str(tree), str(tree))
    assert not is_inside(str(tree / "dir"), str(tree / "dirx"))
