"""waitress peer: the WSGI app in ``wsgi_app`` behind waitress (default 4 threads).

waitress has no access log of its own, so a small middleware writes one JSON line
per request (comparable to reactor's access log).
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import TextIO

from common import parse_args
from waitress import serve


def logging_middleware(app, log: TextIO):
    """Wrap a WSGI app to write one JSON line per request to ``log``."""
    lock = threading.Lock()

    def wrapped(environ, start_response):
        started = time.perf_counter()
        seen: dict[str, str] = {}

        def capture(status, headers, exc_info=None):
            seen["status"] = status
            return start_response(status, headers, exc_info)

        result = app(environ, capture)
        line = json.dumps(
            {
                "ts": time.time(),
                "remote": environ.get("REMOTE_ADDR"),
                "method": environ["REQUEST_METHOD"],
                "path": environ.get("PATH_INFO"),
                "status": int(seen.get("status", "0 ")[:3]),
                "ms": round((time.perf_counter() - started) * 1000, 3),
            }
        )
        with lock:
            log.write(line + "\n")
        return result

    return wrapped


def main() -> None:
    args = parse_args(__doc__)
    os.environ["BENCH_WWW"] = args.directory
    from wsgi_app import application  # reads BENCH_WWW at import

    app = application
    if args.log:
        app = logging_middleware(app, open(args.log, "a", buffering=1))  # noqa: SIM115
    serve(app, host=args.host, port=args.port, ident="waitress", _quiet=True)


if __name__ == "__main__":
    main()
