"""What the configuration builds for a server: the app as served (with health, trusted
proxies and [static] in front), the connection settings, the metrics socket.

Pure functions of a `Config`, used at start-up and again by every reload.
"""

from __future__ import annotations

import importlib.metadata
import os
import socket

import reactor
from reactor.app.application import (
    App,
    CompressionPolicy,
    ErrorReporter,
    build_app,
    mounted_front,
)
from reactor.app.health import HealthApp, Readiness
from reactor.app.proxy import TrustedNetworks, TrustedProxyApp
from reactor.app.static import GzipCache, StaticMount
from reactor.app.types import Application
from reactor.app.wsgi import WsgiApp
from reactor.conn.listener import bind_tcp
from reactor.conn.shared import HttpSettings
from reactor.conn.ws import WebSocketSettings
from reactor.ops import apploader
from reactor.ops.kinds import format_listen, parse_listen
from reactor.ops.listeners import ListenError
from reactor.ops.settings import SETTINGS, Config


# Longest a buffered log line waits before it is written (a crash loses at most this much).
def bind_metrics(config: Config, worker: int) -> socket.socket | None:
    """The metrics listener's socket: `metrics.listen`, its port + `worker` (0 stays 0).
    Raises ListenError."""
    address = config.metrics.listen
    if address is None:
        return None
    host, port = parse_listen(address)
    return bind_metrics_at(host, port + worker if port else 0)


def bind_metrics_at(host: str, port: int) -> socket.socket:
    """A metrics listener's socket on `host`:`port`. Raises ListenError."""
    try:
        return bind_tcp(host, port, backlog=128)
    except OSError as exc:
        raise ListenError(format_listen(host, port), exc.strerror or str(exc)) from None


def wrap_app(app: Application, config: Config, readiness: Readiness) -> Application:
    """The app as served: health paths first, then the trusted-proxy headers, then `app`."""
    proxy, health = config.proxy, config.health
    if proxy.headers != "off" and proxy.trusted:
        app = TrustedProxyApp(app, TrustedNetworks(proxy.trusted), family=proxy.headers)
    if health.livez or health.readyz:
        app = HealthApp(app, readiness, livez=health.livez, readyz=health.readyz)
    return app


def http_settings(config: Config) -> HttpSettings:
    limits, timeouts = config.limits, config.timeouts
    return HttpSettings(
        max_request_line=limits.max_request_line, max_header_bytes=limits.max_header_bytes,
        max_header_fields=limits.max_header_fields, max_body_bytes=limits.max_body_bytes,
        header_s=timeouts.header_s, keepalive_s=timeouts.keepalive_s, body_s=timeouts.body_s,
        write_s=timeouts.write_s)


def websocket_settings(config: Config) -> WebSocketSettings:
    ws = config.websocket
    return WebSocketSettings(ping_interval_s=ws.ping_interval_s,
                             ping_timeout_s=ws.ping_timeout_s,
                             max_message_bytes=ws.max_message_bytes, deflate=ws.deflate)


def static_mounts(config: Config) -> list[StaticMount]:
    """The document roots of [static]: `root` at `prefix`, then each [[static.mounts]]."""
    static = config.static
    mounts = []
    if static.root is not None:
        mounts.append(StaticMount(
            static.prefix, static.root, index=static.index, listing=static.listing,
            symlinks=static.symlinks, dotfiles=static.dotfiles,
            cache_control=static.cache_control, max_ranges=static.max_ranges,
            mime_overrides=dict(static.mime_overrides), uploads=static.uploads))
    mounts.extend(StaticMount(**mount) for mount in static.mounts)
    return mounts


def upload_directories(config: Config) -> list[str]:
    """The directories uploads write into: [files] with uploads, each mount with uploads."""
    found = []
    if config.files.directory is not None and config.files.uploads:
        found.append(str(config.files.directory))
    found.extend(mount.root for mount in static_mounts(config) if mount.uploads)
    return found


def make_app(config: Config, on_error: ErrorReporter | None = None) -> Application:
    """The application: the one [app] names (native or WSGI, behind the [static] mounts),
    else the built-in routes for [files] and [static]; [compression] applies to both.
    `on_error` receives the app's failures, to log (thread-safe). Raises AppLoadError."""
    directory = config.files.directory
    compression = config.compression
    static = config.static
    policy = CompressionPolicy(enabled=compression.enabled, level=compression.level,
                               min_size=compression.min_size, types=compression.types)
    gzip_cache = GzipCache(total_bytes=static.gzip_cache_bytes,
                           file_max_bytes=static.gzip_cache_file_max)
    loaded = apploader.load(config)
    if loaded is not None:
        kind, target = loaded
        hosted: Application
        if kind == "native":
            if isinstance(target, App):
                target.compression = policy
                target.spool_bytes = config.app.spool_bytes
                target.on_error = on_error
            hosted = target
        else:
            host, port = parse_listen(config.server.listen[0])
            hosted = WsgiApp(target, spool_bytes=config.app.spool_bytes, on_error=on_error,
                             multiprocess=config.server.workers > 1, server_name=host,
                             server_port=port)
        return mounted_front(hosted, static_mounts(config), compression=policy,
                             gzip_cache=gzip_cache, on_error=on_error,
                             open_file_cache_bytes=static.open_file_cache_bytes)
    app = build_app(
        directory=str(directory) if directory is not None else None,
        uploads=config.files.uploads, compression=policy, mounts=static_mounts(config),
        gzip_cache=gzip_cache, open_file_cache_bytes=static.open_file_cache_bytes)
    app.on_error = on_error
    return app


def changed_settings(old: Config, new: Config) -> list[str]:
    """The names ("limits.max_body_bytes") of the settings whose values differ."""
    return [s.name for s in SETTINGS
            if getattr(getattr(old, s.section), s.key) != getattr(getattr(new, s.section), s.key)]


UPGRADE_MESSAGE = ("a reload keeps running the code this process started with (new workers"
                   " are forked from it); restart to run the installed version")


def upgraded_version() -> str | None:
    """The version of reactor installed now where this process imported it from, when a
    package upgrade (pip install into the running venv) replaced the running one: a reload
    does not load it (`UPGRADE_MESSAGE`). None otherwise: the same version, a source
    checkout, an editable install."""
    try:
        dist = importlib.metadata.distribution("reactor")
    except importlib.metadata.PackageNotFoundError:
        return None
    if dist.version == reactor.__version__:
        return None
    running = os.path.realpath(reactor.__file__)
    installed = os.path.realpath(str(dist.locate_file("reactor/__init__.py")))
    return dist.version if running == installed else None
