"""The compressed-file cache: gzip bodies of small static files, LRU, bounded in total bytes.

Strategy: entries are keyed by `(path, dev, inode, size, mtime_ns, level)`, so a rewritten,
touched or replaced file misses and is recompressed; the entry it replaces is dropped at once
(one live key per path), not left to age out. Only files up to `file_max_bytes` are cached;
larger ones are sent uncompressed until streamed gzip exists.

Threading: workers share one cache, and the application layer takes no locks. Every step
is a single dict operation, atomic under the GIL (`get`, `pop`, `move_to_end`,
`popitem`), and a step that loses a race (a key evicted by another worker in between) is
skipped, never raised. The running byte total is the one compound update: two racing
workers can skew it by an entry, so it is recounted from the entries every
`RECOUNT_EVERY` insertions. Two workers missing the same file both compress it; the last
insert wins. Both outcomes only cost work, never a wrong body.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable

from reactor.app.compression import gzip_bytes

DEFAULT_TOTAL_BYTES = 64 * 1024 * 1024
DEFAULT_FILE_MAX_BYTES = 1024 * 1024
RECOUNT_EVERY = 256
ENTRY_OVERHEAD_BYTES = 256  # key tuple, dict slot, bytes header: so tiny files still count

Key = tuple[str, int, int, int, int, int]


def cache_key(path: str, info: os.stat_result, level: int) -> Key:
    return (path, info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, level)


class GzipCache:
    """Compressed bodies by `cache_key`; `get_or_compress` is the one call handlers need."""

    def __init__(self, *, total_bytes: int = DEFAULT_TOTAL_BYTES,
                 file_max_bytes: int = DEFAULT_FILE_MAX_BYTES) -> None:
        self.total_bytes = total_bytes
        self.file_max_bytes = file_max_bytes
        self._entries: OrderedDict[Key, bytes] = OrderedDict()
        self._by_path: dict[str, Key] = {}
        self._bytes = 0
        self._inserts = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def fits(self, size: int) -> bool:
        return size <= self.file_max_bytes and _cost(size) <= self.total_bytes

    def get(self, key: Key) -> bytes | None:
        data = self._entries.get(key)
        if data is not None:
            try:
                self._entries.move_to_end(key)
            except KeyError:
                pass  # evicted by another worker just now; the bytes we hold are still right
            self.hits += 1
        return data

    def get_or_compress(self, key: Key, read: Callable[[], bytes], level: int
                        ) -> bytes | None:
        """The cached body for `key`, or `gzip(read())` (and cached); None when `read()`
        did not return the size in the key: the file changed since its stat, and a gzip of
        what is there now would pass for the file those validators describe."""
        data = self.get(key)
        if data is None:
            self.misses += 1
            raw = read()
            if len(raw) != key[3]:
                return None
            data = gzip_bytes(raw, level)
            self.put(key, data)
        return data

    def put(self, key: Key, data: bytes) -> None:
        path = key[0]
        old = self._by_path.get(path)
        if old is not None and old != key:
            self._discard(old)
        previous = self._entries.pop(key, None)
        if previous is not None:
            self._bytes -= _cost(len(previous))
        self._entries[key] = data
        self._by_path[path] = key
        self._bytes += _cost(len(data))
        self._inserts += 1
        if self._inserts % RECOUNT_EVERY == 0:
            self._recount()
        self._evict()

    def forget(self, path: str) -> None:
        """Drop the entry for `path` (its file was just replaced or removed)."""
        key = self._by_path.pop(path, None)
        if key is not None:
            self._discard(key)

    def _discard(self, key: Key) -> None:
        data = self._entries.pop(key, None)
        if data is not None:
            self._bytes -= _cost(len(data))

    def _evict(self) -> None:
        while self._bytes > self.total_bytes:
            try:
                key, data = self._entries.popitem(last=False)
            except KeyError:
                self._bytes = 0
                return
            self._bytes -= _cost(len(data))
            if self._by_path.get(key[0]) == key:
                self._by_path.pop(key[0], None)

    def _recount(self) -> None:
        try:
            self._bytes = sum(_cost(len(data)) for data in list(self._entries.values()))
        except RuntimeError:
            pass  # resized by another worker mid-copy: keep the old figure, recount later

    def clear(self) -> None:
        self._entries.clear()
        self._by_path.clear()
        self._bytes = 0


def _cost(length: int) -> int:
    return length + ENTRY_OVERHEAD_BYTES
