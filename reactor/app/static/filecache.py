"""Open-file cache: a hot static file is answered on the loop, no pool round trip.

Strategy (nginx's `open_file_cache`): the pool path (`StaticHandler.serve`), having opened a
regular file safely under the mount's policies, leaves a duplicate of its fd here with the
stat it was served by, keyed by the request's decoded path as it came (only a canonical one,
`/a/b.css`: no empty or dot segments, so spellings of one path cannot take an entry each).
A file of up to `KEEP_BYTES_MAX` also leaves its bytes, while the cache's total of kept
bytes stays within `keep_bytes` (`[static] open_file_cache_bytes` per mount, by default
`KEEP_BYTES_TOTAL`). What the pool path answered
for the file is kept with the entry as `Variant`s (validators, the header fields of its 200
and of its 304, and for a gzip answer the compressed body): one for clients that take no
gzip, one for those that do. For `valid_s` after that, a GET or HEAD of the same path that
needs no Range is answered on the loop from the entry: one `fstat` checks that the open file
is still the one described (same size, mtime and ctime, still linked: a file grown, rewritten,
deleted, replaced by a rename, renamed away or chmod'ed fails this -- the ctime also moves
when a name of a file with other hard links is removed or renamed over, as the server's own
DELETE and PUT do, so a client sees its own write at once), then the preconditions are
checked against the variant's validators and the body is the kept bytes, or a `sendfile` of
a `dup` of the fd for a larger file. Anything else -- a stale or failed entry, a Range, a
variant the pool path has not made yet -- goes the pool way, which opens the path anew and
refreshes the entry.
A precompressed `NAME.gz` the gzip variant was read from is checked by one `stat` of its
path as well. Path-level changes (a directory or link changed, a `.gz` sidecar added) are
seen once the entry is `valid_s` old. Entries past `valid_s` are closed when next asked for,
by a sweep every `_SWEEP_EVERY` lookups, and by `sweep_all()`, which the server calls on a
timer: an idle server must not keep a deleted file's space allocated (nginx's cache expires
only on lookups; this one is on by default).

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
# A file this small is kept in memory with its entry and answered as bytes (no fd dup, no
# FileIO, no sendfile: one write with the head, or one gather write past 16 KiB); larger
# ones leave by sendfile. A gzip body, made by the gzip cache (which holds it too), is kept
# whatever its size...
KEEP_BYTES_MAX = 32 * 1024
# ...as long as the kept bytes (file bytes and gzip bodies) stay within this many per cache.
KEEP_BYTES_TOTAL = 4 * 1024 * 1024

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


Sidecar = tuple[str, int, int, int]
"""A `.gz` sidecar's absolute path, inode, size and mtime_ns."""


def sidecar_of(path: str, info: os.stat_result) -> Sidecar:
    return (path, info.st_ino, info.st_size, info.st_mtime_ns)


def sidecar_unchanged(sidecar: Sidecar) -> bool:
    """Whether the path still names the sidecar a variant was made from."""
    try:
        info = os.stat(sidecar[0])
    except OSError:
        return False
    return (info.st_ino == sidecar[1] and info.st_size == sidecar[2]
            and info.st_mtime_ns == sidecar[3])


class Variant:
    """One representation of a cached file, as the pool path answered it: its validators,
    the header fields of its 200 and of its 304, and `body`, the compressed bytes of a gzip
    variant (None for identity, whose body is the entry's `data` or its fd; None also for a
    gzip variant only revalidated so far: its 200 goes the pool way); a sidecar's variant
    is used only while `sidecar_unchanged`."""

    __slots__ = ("body", "etag", "fields", "gzip", "mtime", "not_modified", "sidecar", "until")

    def __init__(self, etag: bytes, mtime: int | None, fields: list[tuple[bytes, bytes]],
                 not_modified: list[tuple[bytes, bytes]], *, gzip: bool = False,
                 body: bytes | None = None, sidecar: Sidecar | None = None,
                 until: float = 0.0) -> None:
        self.gzip = gzip
        # a file dated in the future is sent with the current second as its date: such a
        # variant holds until that second ends (`time.time()`), then it is made anew
        self.until = until
        # a precompressed `NAME.gz`: its path and the stat it was served by, checked by a
        # `stat` of the path on each use (the entry's fd is the file's, not the sidecar's)
        self.sidecar = sidecar
        self.etag = etag
        self.mtime = mtime
        self.fields = fields
        self.not_modified = not_modified
        self.body = body

    def with_body(self, body: bytes) -> Variant:
        return Variant(self.etag, self.mtime, self.fields, self.not_modified, gzip=self.gzip,
                       body=body, sidecar=self.sidecar, until=self.until)


class CachedFile:
    """One open file: its fd (owned by the cache), what it was served as, and, for a small
    file, its bytes (read right after the stat the entry is checked against).

    `plain` is the variant for clients that take no gzip, `for_gzip` the one for those that
    do (the same identity variant for a type that is not compressed, or when gzip is off);
    workers set them once they answered the file, the loop reads them. Both describe the
    file of the entry's stat, never another version of the path.
    """

    __slots__ = ("checked", "compressible", "ctime_ns", "data", "fd", "for_gzip", "ino",
                 "mtime_ns", "plain", "size")

    def __init__(self, fd: int, info: os.stat_result, checked: float,
                 data: bytes | None = None) -> None:
        self.fd = fd
        self.ino = info.st_ino
        self.size = info.st_size
        self.mtime_ns = info.st_mtime_ns
        # the inode's change time: also moved by a link count change (a name removed or
        # renamed over while another stays), a rename, a chmod, which size and mtime miss
        self.ctime_ns = info.st_ctime_ns
        self.checked = checked
        self.data = data
        self.compressible = False
        self.plain: Variant | None = None
        self.for_gzip: Variant | None = None

    def describes(self, info: os.stat_result) -> bool:
        """Whether `info` is the stat of the file this entry holds (as `lookup` checks)."""
        return (info.st_ino == self.ino and info.st_size == self.size
                and info.st_mtime_ns == self.mtime_ns and info.st_ctime_ns == self.ctime_ns)

    def kept_bytes(self) -> int:
        total = 0 if self.data is None else len(self.data)
        variant = self.for_gzip
        if variant is not None and variant.body is not None:
            total += len(variant.body)
        return total


class OpenFileCache:
    """Open fds of recently served files, keyed by their canonical decoded request path.

    Threading, without locks (the application layer takes none): workers only add an entry
    for a key that has none (`setdefault`, atomic under the GIL; the loser closes its own
    dup) and set the variants of an entry describing the file they served; only the loop
    thread -- where `lookup` runs -- removes entries and closes their fds, so an fd is never
    closed under the `dup` that reads it. The kept-bytes total is updated from both sides
    without a lock (a race skews it by an entry) and recounted by every sweep.
    """

    def __init__(self, *, valid_s: float = _CACHE_VALID_S, max_entries: int | None = None,
                 fd_limit: int | None = None, keep_bytes: int = KEEP_BYTES_TOTAL) -> None:
        limit = process_fd_limit() if fd_limit is None else fd_limit
        self.valid_s = valid_s
        self.max_entries = default_max_entries(limit) if max_entries is None else max_entries
        self.keep_bytes = keep_bytes
        # An fd is always the lowest free number, so a dup numbered here or above means
        # three quarters of the table are in use: too short of fds to keep one idle.
        self.crowded_fd = limit - limit // 4
        self._entries: dict[bytes, CachedFile] = {}
        self._lookups = 0
        self.kept = 0  # bytes of file data and gzip bodies held by entries (about)
        self.hits = 0  # answers given from the cache (tests, curiosity)
        _LIVE.add(self)

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, key: bytes, fd: int, info: os.stat_result) -> CachedFile | None:
        """In a worker: remember a dup of `fd` (a regular file just opened safely, `info` its
        stat) for `key`, with its bytes if it is small, unless `key` has an entry already,
        the cache is full or the process short of fds. The entry the caller may fill in:
        the new one, or the one there if it describes the same file; else None."""
        entries = self._entries
        entry = entries.get(key)
        if entry is not None:
            return entry if entry.describes(info) else None
        if len(entries) >= self.max_entries or self.valid_s <= 0:
            return None
        now = time.monotonic()
        if now < _short_until:
            return None
        try:
            copy = os.dup(fd)
        except OSError as exc:
            if exc.errno not in SHORTAGE_ERRNOS:
                raise
            short_of_fds()  # the file is served all the same, uncached
            return None
        if copy >= self.crowded_fd:
            os.close(copy)
            return None
        data = None
        size = info.st_size
        if size <= KEEP_BYTES_MAX and self.kept + size <= self.keep_bytes:
            try:
                data = _read_whole(copy, size)
            except BaseException:
                os.close(copy)  # the request fails (EIO, ESTALE); the dup must not leak
                raise
        entry = CachedFile(copy, info, now, data)
        if entries.setdefault(key, entry) is not entry:
            os.close(entry.fd)  # another worker was first
            entry = entries.get(key)
            return entry if entry is not None and entry.describes(info) else None
        if data is not None:
            self.kept += len(data)
        return entry

    def keep_gzip(self, entry: CachedFile, variant: Variant) -> None:
        """In a worker: `variant` (a gzip one) for gzip clients, its body kept only within
        the byte budget (else its 200s take the pool path, which finds it in the gzip
        cache)."""
        body = variant.body
        if body is not None:
            if self.kept + len(body) > self.keep_bytes:
                variant.body = None  # its 304s on the loop, its 200s in the pool
            else:
                self.kept += len(body)
        entry.for_gzip = variant

    def lookup(self, key: bytes) -> CachedFile | None:
        """On the loop: the entry for `key`, checked by one `fstat`, or None (absent, older
        than `valid_s`, or changed: the entry is dropped and the caller takes the pool path,
        which opens the path anew and adds a fresh entry)."""
        self._lookups += 1
        if self._lookups % _SWEEP_EVERY == 0:
            self.sweep()
        entry = self._entries.get(key)
        if entry is None:
            return None
        if time.monotonic() - entry.checked <= self.valid_s:
            try:
                info = os.fstat(entry.fd)
            except OSError:
                pass
            else:
                if (info.st_nlink and info.st_size == entry.size
                        and info.st_mtime_ns == entry.mtime_ns
                        and info.st_ctime_ns == entry.ctime_ns and info.st_ino == entry.ino):
                    return entry
        self._drop(key, entry)
        return None

    def sweep(self) -> None:
        """On the loop: close the entries past `valid_s` (a deleted file's space is
        released, and fds do not linger for files nobody asks for); recount the kept bytes."""
        now = time.monotonic()
        for key, entry in self._entries.copy().items():
            if now - entry.checked > self.valid_s:
                self._drop(key, entry)
        try:
            self.kept = sum(entry.kept_bytes() for entry in list(self._entries.values()))
        except RuntimeError:
            pass  # resized by a worker mid-copy: recounted next time

    def _drop(self, key: bytes, entry: CachedFile) -> None:
        if self._entries.get(key) is entry:
            del self._entries[key]
            self.kept -= entry.kept_bytes()
        os.close(entry.fd)

    def close(self) -> None:
        entries, self._entries = self._entries, {}
        self.kept = 0
        for entry in entries.values():
            os.close(entry.fd)

    def __del__(self) -> None:
        for entry in self._entries.values():
            try:
                os.close(entry.fd)
            except OSError:
                pass


def _read_whole(fd: int, size: int) -> bytes | None:
    """The file's `size` bytes, or None when it reads shorter (it shrank since its stat)."""
    data = os.pread(fd, size, 0) if size else b""
    while len(data) < size:
        more = os.pread(fd, size - len(data), len(data))
        if not more:
            return None
        data += more
    return data


# Every cache of this process (one per static mount of the apps in use; an app replaced by
# a reload takes its caches with it).
_LIVE: weakref.WeakSet[OpenFileCache] = weakref.WeakSet()


def sweep_all() -> None:
    """On the loop: close every cache's entries past `valid_s` (the server's timer)."""
    for cache in list(_LIVE):
        if cache._entries:
            cache.sweep()
