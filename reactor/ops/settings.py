"""Setting declarations: every reactor setting, declared once, as a field of its section.

Strategy: a setting is a field of a frozen section dataclass (`ServerConfig.backlog`) whose
metadata carries its kind (type + validation, see reactor.ops.kinds), one-line description and
optional CLI flags. `SETTINGS` is derived from those fields, and everything else -- the loader,
the flags of `reactor serve`, conf/reactor.toml, the README table -- is derived from `SETTINGS`
(see reactor.ops.config). Adding a setting means adding one field here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from reactor.ops.kinds import (
    Account,
    Bool,
    Choice,
    Int,
    Kind,
    Listen,
    LogTarget,
    MediaTypes,
    OptionalPath,
    Seconds,
    Umask,
    Workers,
)
from reactor.ops.static_kinds import MimeOverrides, Mounts, Text

DEFAULT_CONFIG_PATH = "/etc/reactor/reactor.toml"  # read when it exists and no --config
MiB = 1 << 20
TiB = 1 << 40


# --- declarations ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Spec:
    """What a section field's metadata says about its setting."""

    kind: Kind
    doc: str
    flags: tuple[str, ...] = ()
    metavar: str | None = None
    example: str | None = None  # shown, commented out, for settings unset by default


def setting(default: object, kind: Kind, doc: str, *flags: str, metavar: str | None = None,
            example: str | None = None) -> Any:
    """Declare a setting as a dataclass field: its default, kind, description and CLI flags."""
    spec = Spec(kind, doc, flags, metavar, example)
    return field(default=default, metadata={"setting": spec})


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Listening sockets, connections and processes."""

    listen: tuple[str, ...] = setting(
        ("127.0.0.1:4221",), Listen(),
        'Addresses to listen on, "HOST:PORT"; IPv6 as "[::1]:8080"; port 0 = any free port.',
        "--host", "--port")
    backlog: int = setting(1024, Int(1, 65535), "Length of each listening socket's accept queue.")
    max_connections: int = setting(
        10000, Int(1, 1_000_000), "Open connections per worker; beyond it accepting pauses.")
    pool_threads: int = setting(
        4, Int(1, 256), "Threads per worker running blocking handlers, file reads, compression.")
    workers: int = setting(
        1, Workers(1, 1024), 'Worker processes; "auto" = one per CPU.', "--workers", metavar="N")


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """Request size limits; a request over one is answered 4xx and the connection closed."""

    max_request_line: int = setting(
        8192, Int(1, MiB), "Longest request line in bytes (414 beyond).")
    max_header_bytes: int = setting(
        32768, Int(1, 16 * MiB), "Largest header block in bytes (431 beyond).")
    max_header_fields: int = setting(
        100, Int(1, 10_000), "Most header fields in one request (431 beyond).")
    max_body_bytes: int = setting(
        16 * MiB, Int(1, TiB), "Largest request body in bytes (413 beyond).")


@dataclass(frozen=True, slots=True)
class TimeoutsConfig:
    """Timeouts in seconds."""

    header_s: float = setting(20.0, Seconds(), "Time to receive a request's line and headers.")
    keepalive_s: float = setting(75.0, Seconds(), "Idle time allowed between keep-alive requests.")
    body_s: float = setting(60.0, Seconds(), "Time allowed between two reads of a request body.")
    write_s: float = setting(
        60.0, Seconds(), "Time allowed for a stalled response write to make progress.")
    shutdown_s: float = setting(
        30.0, Seconds(), "Graceful stop: time in-flight requests get before connections close.")


@dataclass(frozen=True, slots=True)
class FilesConfig:
    """The file handlers (/files/...)."""

    directory: Path | None = setting(  # noqa: RUF009 -- setting() is dataclasses.field()
        None, OptionalPath(directory=True),
        "Directory served under /files/; unset = file handlers off. Must exist.",
        "--directory", metavar="DIR", example="/srv/reactor/files")
    uploads: bool = setting(True, Bool(), "Allow POST /files/NAME to write into the directory.")


@dataclass(frozen=True, slots=True)
class StaticConfig:
    """Document roots served like nginx: index files, ranges, validators, sendfile."""

    root: Path | None = setting(  # noqa: RUF009 -- setting() is dataclasses.field()
        None, OptionalPath(directory=True),
        "Directory served under `prefix`; unset = no document root.", metavar="DIR",
        example="/srv/www")
    prefix: str = setting("/", Text(), "URL path the root is mounted at; app routes win.")
    index: str | None = setting(
        "index.html", Text(optional=True), 'File served for a directory URL; "" = none.')
    listing: bool = setting(False, Bool(), "List directories without an index file.")
    symlinks: str = setting(
        "deny-outside", Choice(("deny-outside", "follow", "deny")),
        "Symlinks: refuse those leading outside the root, follow all, or refuse all.")
    dotfiles: bool = setting(False, Bool(), "Serve names starting with a dot.")
    cache_control: str | None = setting(
        None, Text(optional=True), "Cache-Control value on files; unset = none.",
        example="public, max-age=3600")
    max_ranges: int = setting(16, Int(1, 1000), "Most ranges in one Range header (else 200).")
    mime_overrides: tuple[tuple[str, str], ...] = setting(
        (), MimeOverrides(), 'Extra MIME types, e.g. { ".log" = "text/plain" }.')
    uploads: bool = setting(
        False, Bool(), "Accept PUT and DELETE of files under the root (off: 405).")
    gzip_cache_bytes: int = setting(
        64 * MiB, Int(0, TiB), "Memory for gzip-compressed copies of small static files.")
    gzip_cache_file_max: int = setting(
        MiB, Int(0, TiB), "Largest file compressed into that cache (larger: sent as is).")
    mounts: tuple[dict[str, Any], ...] = setting(
        (), Mounts(), "More document roots: [[static.mounts]] tables with the keys above.")


@dataclass(frozen=True, slots=True)
class CompressionConfig:
    """gzip response compression, when the client accepts it."""

    enabled: bool = setting(True, Bool(), "Compress responses with gzip.")
    level: int = setting(6, Int(1, 9), "zlib level: 1 fastest .. 9 smallest.")
    min_size: int = setting(0, Int(0), "Smallest body in bytes worth compressing.")
    types: tuple[str, ...] = setting(
        ("text/*", "application/json", "application/javascript", "application/xml",
         "image/svg+xml"), MediaTypes(), 'Media types to compress; "type/*" matches a family.')


@dataclass(frozen=True, slots=True)
class WebSocketConfig:
    """WebSocket sessions (/ws/echo and app routes): keep-alive pings, limits, deflate."""

    ping_interval_s: float = setting(
        20.0, Seconds(), "Send a ping after this long; 0 = no keep-alive pings.")
    ping_timeout_s: float = setting(
        20.0, Seconds(), "Close a session whose pong has not come back in this time.")
    max_message_bytes: int = setting(
        MiB, Int(1, TiB), "Largest message in bytes, after inflating (close 1009 beyond).")
    deflate: bool = setting(True, Bool(), "Offer permessage-deflate compression (RFC 7692).")


@dataclass(frozen=True, slots=True)
class LogConfig:
    """Logging: one JSON line per request (access) plus an error log."""

    access: str = setting(
        "-", LogTarget(), 'Access log: file path, "-" = stdout, "stderr" or "off".',
        "--log", metavar="FILE")
    error: str = setting(
        "stderr", LogTarget(), 'Error log: file path, "-" = stdout, "stderr" or "off".',
        "--error-log", metavar="FILE")
    level: str = setting(
        "info", Choice(("debug", "info", "warning", "error")), "Least severe error-log level.",
        "--log-level", metavar="LEVEL")
    format: str = setting(
        "json", Choice(("json", "console")), "Log line format: JSON lines or human-readable.")


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    """Daemon mode (--daemon) and privileges."""

    pidfile: Path | None = setting(  # noqa: RUF009 -- setting() is dataclasses.field()
        None, OptionalPath(), "PID file written in daemon mode; unset = none.",
        "--pidfile", metavar="FILE", example="/run/reactor.pid")
    user: str | None = setting(
        None, Account(), "Switch to this user after binding; unset = stay.", example="www-data")
    group: str | None = setting(
        None, Account(group=True), "Switch to this group after binding; unset = the user's.",
        example="www-data")
    umask: int = setting(0o022, Umask(), "File mode creation mask, octal.")


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration: one frozen section object per [section] of the file."""

    server: ServerConfig = field(default_factory=ServerConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    timeouts: TimeoutsConfig = field(default_factory=TimeoutsConfig)
    files: FilesConfig = field(default_factory=FilesConfig)
    static: StaticConfig = field(default_factory=StaticConfig)
    compression: CompressionConfig = field(default_factory=CompressionConfig)
    websocket: WebSocketConfig = field(default_factory=WebSocketConfig)
    log: LogConfig = field(default_factory=LogConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)


@dataclass(frozen=True, slots=True)
class Setting:
    """One declared setting, flattened out of the section dataclasses."""

    section: str
    key: str
    default: Any
    kind: Kind
    doc: str
    flags: tuple[str, ...]
    metavar: str | None
    example: str | None

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"

    @property
    def env(self) -> str:
        return f"REACTOR_{self.section.upper()}_{self.key.upper()}"


SECTION_CLASSES: dict[str, type] = {f.name: type(getattr(Config(), f.name)) for f in fields(Config)}
SECTION_DOCS: dict[str, str] = {
    name: (cls.__doc__ or "").strip().splitlines()[0] for name, cls in SECTION_CLASSES.items()
}
SETTINGS: tuple[Setting, ...] = tuple(
    Setting(section, f.name, f.default, spec.kind, spec.doc, spec.flags, spec.metavar,
            spec.example)
    for section, cls in SECTION_CLASSES.items()
    for f in fields(cls)
    for spec in [f.metadata["setting"]]
)
BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
