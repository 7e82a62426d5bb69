"""A real shortage of file descriptors in this process (the in-process server's too).

`fd_table_full()` lowers RLIMIT_NOFILE's soft limit to a little above the highest fd open
now (so filling the table takes tens of dups, not a million when the limit is high), fills
every free slot with a dup of /dev/null until the kernel answers EMFILE, and on exit closes
them all and puts the limit back. Inside the block every open, dup, socket or temporary file
of any thread fails with EMFILE; what was open before keeps working. Open client sockets and
anything else the test needs *before* entering it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
from collections.abc import Iterator

# Slots above the highest open fd that the lowered limit leaves (then filled): enough for
# holes below to be filled too, few enough to be quick.
_HEADROOM = 32


@contextlib.contextmanager
def fd_table_full() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    spare = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    held: list[int] = []
    try:
        limit = max(int(name) for name in os.listdir("/proc/self/fd")) + _HEADROOM
        if soft != resource.RLIM_INFINITY and 0 <= soft < limit:
            limit = soft
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
        try:
            while True:
                try:
                    held.append(os.dup(spare))
                except OSError as exc:
                    if exc.errno != errno.EMFILE:
                        raise
                    break
            yield
        finally:
            for fd in held:
                os.close(fd)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    finally:
        os.close(spare)
