"""Importing the user's app for `reactor serve --app/--wsgi`: "module:app" or "module:make_app()".

Like gunicorn, the working directory goes on the import path (first, after the `[app] path`
directories), the module is imported once per process — before any worker is forked, so
workers share it — and a failure is one line naming the target, the exception and where it
was raised, for `reactor serve` to print with exit code 2. A factory is called once; later
builds (a reload, a forked worker) reuse what it returned, as an import would.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from typing import Any

from reactor.ops.settings import Config

_loaded: dict[tuple[str, str], Any] = {}


class AppLoadError(Exception):
    """The app cannot be imported or is not an app; str() is the one-line reason."""


def selected(config: Config) -> tuple[str, str] | None:
    """("native" | "wsgi", target) when the configuration names an app, else None."""
    app = config.app
    if app.native and app.wsgi:
        raise AppLoadError("app.native (--app) and app.wsgi (--wsgi) are both set; pick one")
    if app.native:
        return "native", app.native
    if app.wsgi:
        return "wsgi", app.wsgi
    return None


def check_mounts(config: Config) -> None:
    """A document root mounted at "/" would answer every path before a hosted app."""
    static = config.static
    prefixes = ([static.prefix] if static.root is not None else []) + [
        str(mount.get("prefix", "/")) for mount in static.mounts]
    if any((p.rstrip("/") or "/") == "/" for p in prefixes):
        raise AppLoadError("a static mount at \"/\" would hide the app (static mounts answer"
                           " first); set static.prefix (or the mount's prefix) to a path such"
                           " as \"/static\"")


def load(config: Config, *, cwd: str | None = None) -> tuple[str, Any] | None:
    """The configured app as (kind, object), imported (or from this process's cache), or
    None for the built-in routes. Raises AppLoadError."""
    chosen = selected(config)
    if chosen is None:
        return None
    kind, target = chosen
    check_mounts(config)
    key = (kind, target)
    if key not in _loaded:
        extend_path([str(p) for p in config.app.path], os.getcwd() if cwd is None else cwd)
        obj = import_target(target)
        _check_kind(kind, target, obj)
        _loaded[key] = obj
    return kind, _loaded[key]


def extend_path(paths: list[str], cwd: str) -> None:
    for entry in reversed([*paths, cwd]):
        if entry not in sys.path:
            sys.path.insert(0, entry)


def import_target(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    call = attribute.endswith("()")
    attribute = attribute.removesuffix("()")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name) and _raised_here(exc):
            raise AppLoadError(f"cannot import {target!r}: no module named {exc.name!r}"
                               f" (looked in the working directory, app.path and"
                               f" sys.path)") from None
        raise AppLoadError(f"cannot import {target!r}: {_describe(exc)}") from None
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise AppLoadError(f"cannot import {target!r}: {_describe(exc)}") from None
    obj: Any = module
    for name in attribute.split("."):
        try:
            obj = getattr(obj, name)
        except AttributeError:
            raise AppLoadError(f"cannot load {target!r}: {module_name!r} has no attribute"
                               f" {attribute!r}") from None
    if call:
        if not callable(obj):
            raise AppLoadError(f"cannot load {target!r}: {attribute!r} is not callable")
        try:
            obj = obj()
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise AppLoadError(f"cannot load {target!r}: {attribute}() raised"
                               f" {_describe(exc)}") from None
    return obj


def _raised_here(exc: ModuleNotFoundError) -> bool:
    """The missing module is the target itself (not something the target imports)."""
    frames = traceback.extract_tb(exc.__traceback__)
    return all(frame.filename.startswith("<frozen") or "importlib" in frame.filename
               or frame.filename == __file__ for frame in frames)


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{text} ({exc.filename}:{exc.lineno})"
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith("<frozen") and f.filename != __file__]
    # the app's own line rather than reactor's: a RouteError is raised in the router, but the
    # line to fix is the app's `@app.get(...)`
    frames = [f for f in frames if not f.filename.startswith(_PACKAGE)] or frames
    if frames:
        return f"{text} ({frames[-1].filename}:{frames[-1].lineno})"
    return text


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _check_kind(kind: str, target: str, obj: Any) -> None:
    from reactor.app.types import Application
    if kind == "native":
        if isinstance(obj, type):
            # the class itself (`app = App`) has an `open` too, but every request would
            # be a 500: refuse it here, at start-up
            call = "" if target.endswith("()") else f"; did you mean '{target}()'?"
            raise AppLoadError(f"{target!r} is the class {obj.__name__}, not an app (an"
                               f" instance){call}")
        if not isinstance(obj, Application):
            hint = "; to host a WSGI app use --wsgi" if callable(obj) else ""
            raise AppLoadError(f"{target!r} is a {type(obj).__name__}, not a reactor App"
                               f"{hint}")
    elif not callable(obj):
        raise AppLoadError(f"{target!r} is a {type(obj).__name__}, not a WSGI callable")
