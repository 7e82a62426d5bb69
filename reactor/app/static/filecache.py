"""Open-file cache: a hot static file is answered on the loop, no pool round trip.

Strategy (nginx's `open_file_cache`): the pool path (`StaticHandler.serve`), having opened a
regular file safely under the mount's policies, leaves a duplicate of its fd here with the
stat it was served by. For `valid_s` after that, a GET or HEAD of the same clean path that
needs no Range and no gzip is answered on the loop from the entry: one `fstat` checks that
the open file is still the one described (same size and mtime, still linked: a file grown,
rewritten, deleted or replaced by a rename fails this), then the body leaves by `sendfile`
of a `dup` of the fd. Anything else -- a stale or failed entry, a Range, a gzip answer -- goes
the pool way, which opens the path anew and refreshes the entry. Path-level changes (a
directory or link changed, a new file renamed over a hard-linked one) are seen once the
entry is `valid_s` old. Entries past `valid_s` are closed when next asked for, by a sweep
every `_SWEEP_EVERY` lookups, and by `sweep_all()`, which the server calls on a timer: an
idle server must not keep a deleted file's space allocated (nginx's cache expires only on
lookups; this one is on by default).

Bounded by the process's fd limit, since every entry holds an fd the connections, uploads
and spools need too (nginx's `open_file_cache` is off unless sized; this one is on, so it
must be conservative): at most `default_max_entries()` fds per cache, and no new entry while
the process is short of fds -- when the dup lands in the top quarter of the fd table, or for
`valid_s` after an EMFILE (`short_of_fds`). Entries are only closed on the loop, so a
shortage is relieved by expiry (within `valid_s`, by the timer), not by a worker.
"""

from __future__ import annotations

import os
import resource
import sys
import time
import weakref

from reactor.app.handlers import SHORTAGE_ERRNOS

_CACHE_VALID_S = 1.0
_CACHE_MAX = 256  # open fds held per mount at most, whatever the fd limit
# ...and at most this share of RLIMIT_NOFILE: 1/16 keeps the caches of four mounts (more than
# most servers have) within a quarter of the table, the rest for connections and files in
# flight; at the common limit of 1024 that is 64 per mount, at 256 it is 16, and from 4096
# up it is _CACHE_MAX.
_LIMIT_SHARE = 16
_SWEEP_EVERY = 1024  # lookups between sweeps of entries past `valid_s`

_soft_limit: list[int] = []
_short_until = 0.0  # monotonic time until which no cache adds entries (see `short_of_fds`)


def process_fd_limit() -> int:
    """RLIMIT_NOFILE's soft limit (sys.maxsize for none), read once: reactor never changes
    it, and a cache is made per mount and per app rebuild."""
    if not _soft_limit:
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        _soft_limit.append(sys.maxsize if soft == resource.RLIM_INFINITY or soft < 0 else soft)
    return _soft_limit[0]


def default_max_entries(fd_limit: int | None = None) -> int:
    """The fds one cache may hold: `_CACHE_MAX`, or 1/`_LIMIT_SHARE` of the fd limit."""
    limit = process_fd_limit() if fd_limit is None else fd_limit
    return min(_CACHE_MAX, limit // _LIMIT_SHARE)


def short_of_fds(hold_s: float = _CACHE_VALID_S) -> None:
    """From any thread: the process just ran out of fds (EMFILE) or memory; no cache adds an
    entry for `hold_s`, while the ones it holds expire. A plain assignment: atomic under the
    GIL."""
    global _short_until
    _short_until = time.monotonic() + hold_s


class CachedFile:
    """One open file: its fd (owned by the cache) and what it was served as.

    `fields` is for the file server: the header fields of its plain 200 for this file,
    made on first use (validators and all), valid as long as the entry is.
    """

    __slots__ = ("checked", "fd", "fields", "ino", "mtime_ns", "size")

    def __init__(self, fd: int, info: os.stat_result, checked: float) -> None:
        self.fd = fd
        self.ino = info.st_ino
        self.size = info.st_size
        self.mtime_ns = info.st_mtime_ns
        self.checked = checked
        self.fields: tuple[tuple[bytes, bytes], ...] | None = None


class OpenFileCache:
    """Open fds of recently served files, keyed by their clean path segments.

    Threading, without locks (the application layer takes none): workers only add an entry
    for a key that has none (`setdefault`, atomic under the GIL; the loser closes its own
    dup); only the loop thread -- where `open` runs -- removes entries and closes their fds,
    so an fd is never closed under the `dup` that reads it.
    """

    def __init__(self, *, valid_s: float = _CACHE_VALID_S, max_entries: int | None = None,
                 fd_limit: int | None = None) -> None:
        limit = process_fd_limit() if fd_limit is None else fd_limit
        self.valid_s = valid_s
        self.max_entries = default_max_entries(limit) if max_entries is None else max_entries
        # An fd is always the lowest free number, so a dup numbered here or above means
        # three quarters of the table are in use: too short of fds to keep one idle.
        self.crowded_fd = limit - limit // 4
        self._entries: dict[tuple[str, ...], CachedFile] = {}
        self._lookups = 0
        self.hits = 0  # answers given from the cache (tests, curiosity)
        _LIVE.add(self)

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, key: tuple[str, ...], fd: int, info: os.stat_result) -> None:
        """In a worker: remember a dup of `fd` (a regular file just opened safely) for `key`,
        unless it has an entry already, the cache is full or the process short of fds."""
        entries = self._entries
        if key in entries or len(entries) >= self.max_entries or self.valid_s <= 0:
            return
        now = time.monotonic()
        if now < _short_until:
            return
        try:
            copy = os.dup(fd)
        except OSError as exc:
            if exc.errno not in SHORTAGE_ERRNOS:
                raise
            short_of_fds()  # the file is served all the same, uncached
            return
        if copy >= self.crowded_fd:
            os.close(copy)
            return
        entry = CachedFile(copy, info, now)
        if entries.setdefault(key, entry) is not entry:
            os.close(entry.fd)  # another worker was first

    def open(self, key: tuple[str, ...]) -> tuple[int, os.stat_result, CachedFile] | None:
        """On the loop: a new fd of the cached file, its fresh stat and entry, or None (absent,
        older than `valid_s`, or changed: the entry is dropped and the caller takes the
        pool path, which opens the path anew and adds a fresh entry)."""
        self._lookups += 1
        if self._lookups % _SWEEP_EVERY == 0:
            self.sweep()
        entry = self._entries.get(key)
        if entry is None:
            return None
        info = None
        if time.monotonic() - entry.checked <= self.valid_s:
            try:
                info = os.fstat(entry.fd)
            except OSError:
                info = None
        if (info is None or info.st_nlink == 0 or info.st_size != entry.size
                or info.st_mtime_ns != entry.mtime_ns or info.st_ino != entry.ino):
            self._drop(key, entry)
            return None
        try:
            copy = os.dup(entry.fd)
        except OSError as exc:
            if exc.errno not in SHORTAGE_ERRNOS:
                raise
            return None  # the pool path answers it (a 503 if it cannot open the file either)
        self.hits += 1
        return copy, info, entry

    def sweep(self) -> None:
        """On the loop: close the entries past `valid_s` (a deleted file's space is
        released, and fds do not linger for files nobody asks for)."""
        now = time.monotonic()
        for key, entry in self._entries.copy().items():
            if now - entry.checked > self.valid_s:
                self._drop(key, entry)

    def _drop(self, key: tuple[str, ...], entry: CachedFile) -> None:
        if self._entries.get(key) is entry:
            del self._entries[key]
        os.close(entry.fd)

    def close(self) -> None:
        entries, self._entries = self._entries, {}
        for entry in entries.values():
            os.close(entry.fd)

    def __del__(self) -> None:
        for entry in self._entries.values():
            try:
                os.close(entry.fd)
            except OSError:
                pass


# Every cache of this process (one per static mount of the apps in use; an app replaced by
# a reload takes its caches with it).
_LIVE: weakref.WeakSet[OpenFileCache] = weakref.WeakSet()


def sweep_all() -> None:
    """On the loop: close every cache's entries past `valid_s` (the server's timer)."""
    for cache in list(_LIVE):
        if cache._entries:
            cache.sweep()
