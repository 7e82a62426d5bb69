"""Unit tests for reactor.app.static.gzcache: hits, invalidation by stat, LRU and the byte cap."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

from reactor.app.static.gzcache import ENTRY_OVERHEAD_BYTES, GzipCache, cache_key


def _compress(cache: GzipCache, path: Path) -> bytes:
    info = os.stat(path)
    data = cache.get_or_compress(cache_key(str(path), info, 6), path.read_bytes, 6)
    assert data is not None
    return data


def test_hit_after_miss(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"abc" * 100)
    cache = GzipCache()
    first = _compress(cache, path)
    assert gzip.decompress(first) == b"abc" * 100
    assert _compress(cache, path) is first
    assert (cache.hits, cache.misses) == (1, 1)


def test_changed_file_is_recompressed_and_old_entry_dropped(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"old" * 100)
    cache = GzipCache()
    _compress(cache, path)
    path.write_bytes(b"new!" * 100)
    info = os.stat(path)
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))
    assert gzip.decompress(_compress(cache, path)) == b"new!" * 100
    assert len(cache) == 1  # one live entry per path
    assert cache.misses == 2


def test_same_size_same_mtime_other_inode_misses(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"1" * 100)
    cache = GzipCache()
    _compress(cache, path)
    info = os.stat(path)
    replacement = tmp_path / "b.txt"
    replacement.write_bytes(b"2" * 100)
    os.utime(replacement, ns=(info.st_atime_ns, info.st_mtime_ns))
    os.replace(replacement, path)  # rename into place: new inode, same size and mtime
    assert gzip.decompress(_compress(cache, path)) == b"2" * 100


def test_lru_eviction_keeps_total_under_cap(tmp_path: Path) -> None:
    entry = 1000 + ENTRY_OVERHEAD_BYTES
    cache = GzipCache(total_bytes=3 * entry, file_max_bytes=10_000)
    keys = [(f"/f{i}", 0, i, 0, 0, 6) for i in range(4)]
    for key in keys[:3]:
        cache.put(key, b"x" * 1000)
    assert cache.get(keys[0]) is not None  # keys[0] is now the most recent
    cache.put(keys[3], b"x" * 1000)
    assert cache.get(keys[1]) is None  # the least recently used went
    assert all(cache.get(k) is not None for k in (keys[0], keys[2], keys[3]))
    assert cache.size_bytes == 3 * entry <= cache.total_bytes


def test_fits_respects_per_file_cap() -> None:
    cache = GzipCache(total_bytes=10_000, file_max_bytes=1000)
    assert cache.fits(1000)
    assert not cache.fits(1001)


def test_a_read_of_another_size_is_neither_served_nor_cached(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"a" * 100)
    cache = GzipCache()
    key = cache_key(str(path), os.stat(path), 6)
    # truncated, or grown, since the stat: no gzip of it passes for the file, none is cached
    assert cache.get_or_compress(key, lambda: b"a" * 60, 6) is None
    assert cache.get_or_compress(key, lambda: b"a" * 160, 6) is None
    assert len(cache) == 0
    assert gzip.decompress(cache.get_or_compress(key, lambda: b"a" * 100, 6) or b"") \
        == b"a" * 100
