"""aiohttp peer: ``aiohttp.web`` on the default asyncio loop, one process.

Binary files go out as ``web.FileResponse`` (sendfile); HTML pages are read and
gzip-compressed per request when accepted. Access log: aiohttp's ``AccessLogger``
through a logging ``FileHandler`` on ``--log``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web
from common import TEXT_TYPE, content_type, gzip_bytes, parse_args, resolve_file, wants_gzip

WWW = web.AppKey("www", Path)
TEXT_HEADERS = {"Content-Type": TEXT_TYPE}


async def echo(request: web.Request) -> web.Response:
    return web.Response(body=request.match_info["text"].encode(), headers=TEXT_HEADERS)


async def files(request: web.Request) -> web.StreamResponse:
    found = resolve_file(request.app[WWW], request.match_info["name"])
    if found is None:
        raise web.HTTPNotFound()
    if found.suffix != ".html":
        return web.FileResponse(found, headers={"Content-Type": content_type(found)})
    body = found.read_bytes()
    headers = {"Content-Type": content_type(found)}
    if wants_gzip(found, request.headers.get("Accept-Encoding")):
        body = gzip_bytes(body)
        headers.update({"Content-Encoding": "gzip", "Vary": "Accept-Encoding"})
    return web.Response(body=body, headers=headers)


def access_logger(path: str | None) -> logging.Logger | None:
    if not path:
        return None
    logger = logging.getLogger("bench.access")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(logging.FileHandler(path))
    return logger


def main() -> None:
    args = parse_args(__doc__)
    app = web.Application()
    app[WWW] = Path(args.directory).resolve()
    app.add_routes([web.get("/echo/{text:.*}", echo), web.get("/files/{name}", files)])
    web.run_app(app, host=args.host, port=args.port, backlog=4096,
                access_log=access_logger(args.log), print=None)


if __name__ == "__main__":
    main()
