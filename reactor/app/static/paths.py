"""Path safety for document roots: a decoded request path to segments, segments to an open fd.

Strategy: two steps, both answering None for "404, as if it did not exist" — never raising
for a bad path, never a 400 (nginx answers 400 for some of these; we answer 404 uniformly so
a probe learns nothing from the status).

1. `clean_segments` (pure, runs on the loop): the path arrives percent-decoded exactly once
   (by the router). NUL and backslash anywhere, invalid UTF-8 (overlong forms such as
   `%c0%ae` included), `..` segments and — unless allowed — dot-segments (`.git`, `.env`)
   are refused. Empty and `.` segments are dropped, so `//etc/passwd` is `etc/passwd` under
   the root. What remains is a list of plain names; whether the path named a directory
   (a final `/` or `.`) is `names_a_directory`.
2. `open_under` (blocking, runs in the pool): opens root + segments under a symlink policy:
   - "follow": symlinks anywhere are followed, even out of the root (the admin's choice).
   - "deny-outside": the realpath must be the root's realpath or below it; then that
     symlink-free path is opened with O_NOFOLLOW. The root's realpath is taken per request,
     so a root that is itself a symlink repointed by a deploy keeps working.
   - "deny": the path is walked one component at a time with `openat(O_NOFOLLOW)`, so any
     symlink component (ELOOP) is a 404 and nothing can be swapped in between the checks.
   Files are opened O_NONBLOCK so a FIFO cannot park a worker; anything that is neither a
   regular file nor a directory is a 404.

Writes (PUT, DELETE) never leave the root, whatever the policy: `write_location` keeps the
names as they are under "deny", and resolves them like "deny-outside" under both other
policies; `open_directory` then walks to the parent with O_NOFOLLOW at every step.
"""

from __future__ import annotations

import errno
import os
import stat

SYMLINK_POLICIES = ("deny-outside", "follow", "deny")

_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)
_DIR_FLAGS = os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_DIRECTORY", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)

# errnos that mean "no such servable file here". Anything else is raised: a shortage (EMFILE)
# for the handler to answer 503 (`handlers.unavailable`), a real error (EIO) as a fault.
_MISSING = frozenset({
    errno.ENOENT, errno.ENOTDIR, errno.EACCES, errno.EPERM, errno.ELOOP, errno.ENAMETOOLONG,
    errno.ENXIO, errno.EISDIR, errno.ENODEV, errno.EINVAL,
})


def clean_segments(decoded: bytes, *, dotfiles: bool = False) -> list[str] | None:
    """The path's plain segments, or None when it must be a 404 (see the module docstring)."""
    if b"\0" in decoded or b"\\" in decoded:
        return None
    try:
        text = decoded.decode("utf-8")  # strict: overlong and surrogate forms are errors
    except UnicodeDecodeError:
        return None
    segments: list[str] = []
    for segment in text.split("/"):
        if not segment or segment == ".":
            continue
        if segment == ".." or (segment[0] == "." and not dotfiles):
            return None
        segments.append(segment)
    return segments


def names_a_directory(decoded: bytes) -> bool:
    """Whether the decoded path names a directory by its form: it ends in `/`, or in a `.`
    segment, which RFC 3986 5.2.4 removes keeping the slash (`/a.txt/.` is `/a.txt/`, a
    404 for a file; `/dir/.` is `/dir/`, its index, as nginx answers both)."""
    return decoded.endswith((b"/", b"/."))


class Opened:
    """An open file or directory under a root: its fd (owned by the caller), stat and path."""

    __slots__ = ("fd", "info", "path")

    def __init__(self, fd: int, info: os.stat_result, path: str) -> None:
        self.fd = fd
        self.info = info
        self.path = path

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.info.st_mode)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def open_under(root: str, segments: list[str], policy: str) -> Opened | None:
    """Open root/segments under `policy`; None when it is missing, hidden or not allowed."""
    try:
        if policy == "deny":
            fd, path = _open_walk(root, segments)
        elif policy == "deny-outside":
            fd, path = _open_inside(root, segments)
        else:
            path = os.path.join(root, *segments)
            fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno in _MISSING:
            return None
        raise
    if fd < 0:
        return None
    try:
        info = os.fstat(fd)
        if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
            os.close(fd)
            return None
    except BaseException:
        os.close(fd)
        raise
    return Opened(fd, info, path)


def _open_inside(root: str, segments: list[str]) -> tuple[int, str]:
    base = os.path.realpath(root)
    path = os.path.realpath(os.path.join(base, *segments))
    if not _within(base, path):
        return -1, path
    # realpath has resolved every link; O_NOFOLLOW refuses one swapped in since then.
    return os.open(path, _OPEN_FLAGS | _NOFOLLOW), path


def _open_walk(root: str, segments: list[str]) -> tuple[int, str]:
    fd = os.open(root, _DIR_FLAGS)  # the root itself may be a symlink: configured, trusted
    try:
        last = len(segments) - 1
        for index, segment in enumerate(segments):
            flags = (_OPEN_FLAGS if index == last else _DIR_FLAGS) | _NOFOLLOW
            child = os.open(segment, flags, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd, os.path.join(os.path.realpath(root), *segments)


def write_location(root: str, segments: list[str], policy: str, *, dotfiles: bool
                   ) -> tuple[str, list[str]] | None:
    """Where a write to root/segments lands: `(base, names)`, the directory to walk from and
    the path below it (the last name is the file; none at all for the root itself), or None
    for a 404. Under "deny" the names stay as they are and the walk refuses any link; else
    they are resolved (realpath) and must stay inside the root, and — unless `dotfiles` —
    must not reach a hidden name through a link."""
    if policy == "deny":
        return root, segments
    base = os.path.realpath(root)
    path = os.path.realpath(os.path.join(base, *segments))
    if path == base:
        return base, []
    if not _within(base, path):
        return None
    names = path[len(base.rstrip(os.sep)) + 1:].split(os.sep)
    if not dotfiles and any(name.startswith(".") for name in names):
        return None
    return base, names


def open_directory(base: str, names: list[str]) -> int:
    """An fd of the directory base/names, walked one name at a time with O_NOFOLLOW (`base`
    itself may be a link: configured, trusted). OSError ELOOP when a name is a symlink,
    ENOENT or ENOTDIR when it is missing or not a directory."""
    fd = os.open(base, _DIR_FLAGS)
    try:
        for name in names:
            try:
                child = os.open(name, _DIR_FLAGS | _NOFOLLOW, dir_fd=fd)
            except NotADirectoryError:
                # O_DIRECTORY|O_NOFOLLOW on a link fails with ENOTDIR: tell the two apart.
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if stat.S_ISLNK(info.st_mode):
                    raise OSError(errno.ELOOP, "a symlink in the path", name) from None
                raise
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def is_inside(root: str, path: str) -> bool:
    """Whether `path`'s realpath is `root`'s realpath or below it (listing symlink entries)."""
    return _within(os.path.realpath(root), os.path.realpath(path))


def _within(base: str, path: str) -> bool:
    return path == base or path.startswith(base.rstrip(os.sep) + os.sep)
