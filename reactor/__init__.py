"""reactor: a production HTTP/1.1 server daemon in pure Python.

The application API: `from reactor import App, Request, Response` (see reactor.app.application
for App, reactor.app.types for Request and Response). Imported on first use, so the command
line and the server's lower layers do not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "App": "reactor.app.application",
    "FormData": "reactor.app.request",
    "HTTPError": "reactor.app.types",
    "QueryParams": "reactor.app.request",
    "Request": "reactor.app.types",
    "Response": "reactor.app.types",
    "StreamBody": "reactor.app.types",
    "Upload": "reactor.app.types",
    "UploadFile": "reactor.app.request",
}

__all__ = ["App", "FormData", "HTTPError", "QueryParams", "Request", "Response", "StreamBody",
           "Upload", "UploadFile", "__version__"]

if TYPE_CHECKING:
    from reactor.app.application import App
    from reactor.app.request import FormData, QueryParams, UploadFile
    from reactor.app.types import HTTPError, Request, Response, StreamBody, Upload


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'reactor' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
