"""Static document roots: `StaticMount` settings and the handler that serves them (GET/HEAD,
and PUT/DELETE when a mount allows uploads).

Modules: `mount` (settings), `handler` (methods, paths, directories), `files` (one file's
representation, preconditions, ranges, body), `paths` (path safety), `conditional`
(validators, If-*), `ranges` (Range, multipart), `mime` (Content-Type), `listing`
(directory pages), `gzcache` (compressed-file cache), `filecache` (open fds of hot files,
answered on the loop), `upload` (PUT and DELETE).
"""

from __future__ import annotations

from reactor.app.static.gzcache import GzipCache
from reactor.app.static.handler import StaticHandler
from reactor.app.static.mount import MountError, StaticMount

__all__ = ["GzipCache", "MountError", "StaticHandler", "StaticMount"]
