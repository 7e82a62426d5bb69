"""tornado peer: one ``tornado.web.Application`` on the asyncio loop, one process.

Access log: tornado's own ``tornado.access`` logger, written to ``--log``.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import tornado.web
from common import TEXT_TYPE, content_type, gzip_bytes, parse_args, resolve_file, wants_gzip


class EchoHandler(tornado.web.RequestHandler):
    def get(self, text: str) -> None:
        self.set_header("Content-Type", TEXT_TYPE)
        self.finish(text.encode())


class FileHandler(tornado.web.RequestHandler):
    def initialize(self, directory: Path) -> None:
        self.directory = directory

    def get(self, name: str) -> None:
        found = resolve_file(self.directory, name)
        if found is None:
            raise tornado.web.HTTPError(404)
        body = found.read_bytes()
        self.set_header("Content-Type", content_type(found))
        if wants_gzip(found, self.request.headers.get("Accept-Encoding")):
            body = gzip_bytes(body)
            self.set_header("Content-Encoding", "gzip")
            self.set_header("Vary", "Accept-Encoding")
        self.finish(body)


def configure_access_log(path: str | None) -> None:
    logger = logging.getLogger("tornado.access")
    logger.propagate = False
    if path:
        logger.setLevel(logging.INFO)
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger.addHandler(handler)
    else:
        logger.setLevel(logging.WARNING)


async def serve(host: str, port: int, directory: Path) -> None:
    app = tornado.web.Application(
        [
            (r"/echo/(.*)", EchoHandler),
            (r"/files/([^/]+)", FileHandler, {"directory": directory}),
        ]
    )
    app.listen(port, address=host, backlog=4096)
    await asyncio.Event().wait()


def main() -> None:
    args = parse_args(__doc__)
    configure_access_log(args.log)
    asyncio.run(serve(args.host, args.port, Path(args.directory).resolve()))


if __name__ == "__main__":
    main()
