"""A file written beside its final name and given that name only when complete: the one
helper behind every upload (`handlers.FileUpload`: POST/PUT /files, PUT on a `[static]`
mount with uploads).

Strategy:
- On Linux the file is unnamed: `open(dir, O_TMPFILE)` makes an inode in the directory's
  file system that no name points to, freed by the kernel when its last fd closes -- also
  when the process dies by SIGKILL, the OOM killer or a power cut of the process. An upload
  cut short by anything leaves nothing on disk; no start-up sweep is needed (one would race
  other instances sharing the directory).
- When the body is complete, `linkat` of `/proc/self/fd/N` with AT_SYMLINK_FOLLOW (allowed
  unprivileged, unlike AT_EMPTY_PATH) names it. A create-only write (`If-None-Match: *`)
  links it under the final name directly: linkat refuses an existing name (EEXIST), so of
  two racing creators exactly one wins, atomically. A replace links it to a fresh
  `.upload-XXXXXXXX` and renames that over the final name at once: readers see the old
  file or the new one, and the named window is one rename, not the whole upload.
- Where unnamed files cannot be had -- a file system without O_TMPFILE (EOPNOTSUPP), a kernel
  that predates it (EISDIR: it reads the flag as O_DIRECTORY; EINVAL), or no `/proc/self/fd`
  (checked once per process, at import: `UNNAMED`) -- the file is a named `.upload-XXXXXXXX`
  from the start, as before: removed on abort and on a stop past `shutdown_s`, left behind
  by a SIGKILL.
- A completed body is never lost to the link step: a full disk or quota (ENOSPC, EDQUOT)
  and a read-only file system (EROFS) are raised for the caller's 507/500 as for any write;
  on any other failure the body is copied into a named temp file and put in place the
  named way, whose own errors (the directory removed: ENOENT, no permission: EACCES) are
  the ones a named upload has.
- Mode: 0644 less the umask, applied by the kernel at open (O_TMPFILE keeps it through
  linkat); the umask is never read (setting it to read it races other threads).
- Blocking throughout: call it from the pool. Every call is relative to the open directory
  the caller holds, so nothing swapped into the path meanwhile moves the write elsewhere.
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Callable

_TEMP_PREFIX = ".upload-"
_NAMED_FLAGS = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
                | getattr(os, "O_NOFOLLOW", 0))
_O_TMPFILE: int = getattr(os, "O_TMPFILE", 0)
_PROC_FD = "/proc/self/fd/"
UNNAMED = bool(_O_TMPFILE) and os.path.isdir(_PROC_FD)
"""Make upload files unnamed (O_TMPFILE): decided once per process; a test may switch it off."""
# open(O_TMPFILE) failures meaning "not here": the file is then named from the start.
_NO_TMPFILE = frozenset({errno.EOPNOTSUPP, errno.ENOTSUP, errno.EISDIR, errno.EINVAL})
# linkat failures that are the directory's state, answered as for any write (507, 500).
_LINK_RAISES = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
# link(2) failures meaning "this file system has no hard links" (vfat answers EPERM).
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP})
_COPY_BYTES = 1024 * 1024


class NewFile:
    """A new empty file (0644 less umask) in the open directory `dir_fd`, which the caller
    owns and keeps open until `publish` or `discard` returns. Unnamed when it can be
    (`unnamed`), else `temp` names it."""

    __slots__ = ("dir_fd", "fd", "temp")

    def __init__(self, dir_fd: int) -> None:
        self.dir_fd = dir_fd
        self.temp = ""  # the file's name in the directory while it has one
        self.fd = _open_unnamed(dir_fd) if UNNAMED else -1
        if self.fd < 0:
            self.fd, self.temp = _create_named(dir_fd)

    @property
    def unnamed(self) -> bool:
        return self.fd >= 0 and not self.temp

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    def sync(self) -> None:
        """The data on disk (fsync), before it gets a name: a crash after the rename never
        shows an empty or torn file under the final name."""
        os.fsync(self.fd)

    def publish(self, name: str, *, create_only: bool) -> bool:
        """Put the file in place as `name` (replacing what is there, unless `create_only`)
        and close it. False when `create_only` and the name exists: nothing changed (the
        file stays open for `discard`). The directory is not fsynced here."""
        if self.unnamed:
            source = f"{_PROC_FD}{self.fd}"
            try:
                if create_only:  # linkat refuses an existing name: atomic create-only
                    try:
                        os.link(source, name, dst_dir_fd=self.dir_fd, follow_symlinks=True)
                    except FileExistsError:
                        return False
                    self._close()
                    return True
                self.temp = _fresh_name(lambda temp: os.link(
                    source, temp, dst_dir_fd=self.dir_fd, follow_symlinks=True))
            except OSError as exc:
                if exc.errno in _LINK_RAISES:
                    raise
                self._name_by_copy()  # never lose a complete body to the link step
        fd = self.dir_fd
        if create_only:
            try:
                os.link(self.temp, name, src_dir_fd=fd, dst_dir_fd=fd)
            except FileExistsError:
                return False
            except OSError as exc:
                if exc.errno not in _NO_HARD_LINKS:
                    raise
                # A file system without hard links: the caller's check just made is all
                # we have.
                os.replace(self.temp, name, src_dir_fd=fd, dst_dir_fd=fd)
            else:
                os.unlink(self.temp, dir_fd=fd)
        else:
            os.replace(self.temp, name, src_dir_fd=fd, dst_dir_fd=fd)
        self.temp = ""
        self._close()
        return True

    def discard(self) -> None:
        """Close the file and remove its name if it has one; safe to call again."""
        self._close()
        if self.temp:
            try:
                os.unlink(self.temp, dir_fd=self.dir_fd)
            except FileNotFoundError:
                pass
            self.temp = ""

    def _name_by_copy(self) -> None:
        """Copy the unnamed file into a new named temp file, which replaces it."""
        fd, temp = _create_named(self.dir_fd)
        try:
            offset = 0
            while piece := os.pread(self.fd, _COPY_BYTES, offset):
                offset += len(piece)
                view = memoryview(piece)
                while view:
                    view = view[os.write(fd, view):]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(temp, dir_fd=self.dir_fd)
            raise
        self._close()
        self.fd, self.temp = fd, temp

    def _close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


def _open_unnamed(dir_fd: int) -> int:
    """An unnamed file in the directory, or -1 where the file system or kernel has none."""
    try:
        return os.open(".", _O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in _NO_TMPFILE:
            return -1
        raise


def _create_named(dir_fd: int) -> tuple[int, str]:
    """A new file `.upload-XXXXXXXX` in the directory (`tempfile.mkstemp`, but relative to
    an open directory); as a dotfile it is never served."""
    opened: list[int] = []
    name = _fresh_name(lambda temp: opened.append(
        os.open(temp, _NAMED_FLAGS, 0o644, dir_fd=dir_fd)))
    return opened[0], name


def _fresh_name(make: Callable[[str], object]) -> str:
    """The name `.upload-XXXXXXXX` that `make(name)` created without meeting an existing
    one (FileExistsError: another is tried). The prefix is fixed and short: the temp name
    must fit wherever the final name fits (NAME_MAX)."""
    for _ in range(100):
        name = _TEMP_PREFIX + secrets.token_hex(4)
        try:
            make(name)
        except FileExistsError:
            continue
        return name
    raise OSError(errno.EEXIST, "no free temporary file name")
