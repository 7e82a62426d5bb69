"""twisted.web peer: a ``Resource`` tree on the default (epoll) reactor, one process.

Access log: ``Site(logPath=...)``, twisted's combined-format log file.
"""

from __future__ import annotations

from pathlib import Path

from common import TEXT_TYPE, content_type, gzip_bytes, parse_args, resolve_file, wants_gzip
from twisted.internet import reactor
from twisted.web import resource, server


class Echo(resource.Resource):
    isLeaf = True

    def render_GET(self, request) -> bytes:
        request.setHeader(b"Content-Type", TEXT_TYPE.encode())
        return b"/".join(request.postpath)


class Files(resource.Resource):
    isLeaf = True

    def __init__(self, directory: Path):
        super().__init__()
        self.directory = directory

    def render_GET(self, request) -> bytes:
        name = b"/".join(request.postpath).decode("utf-8", "replace")
        found = resolve_file(self.directory, name)
        if found is None:
            request.setResponseCode(404)
            return b"not found\n"
        body = found.read_bytes()
        request.setHeader(b"Content-Type", content_type(found).encode())
        accept = request.getHeader(b"accept-encoding")
        if wants_gzip(found, accept.decode("latin-1") if accept else None):
            body = gzip_bytes(body)
            request.setHeader(b"Content-Encoding", b"gzip")
            request.setHeader(b"Vary", b"Accept-Encoding")
        return body


def main() -> None:
    args = parse_args(__doc__)
    root = resource.Resource()
    root.putChild(b"echo", Echo())
    root.putChild(b"files", Files(Path(args.directory).resolve()))
    site = server.Site(root, logPath=args.log)
    reactor.listenTCP(args.port, site, backlog=4096, interface=args.host)
    reactor.run()


if __name__ == "__main__":
    main()
