"""Setting declarations: every reactor setting, declared once, as a field of its section.

Strategy: a setting is a field of a frozen section dataclass (`ServerConfig.backlog`) whose
metadata carries its kind (type + validation, see reactor.ops.kinds), one-line description,
reload class (`Reload`: applied live, rebuilds the app, or needs a restart -- declared by
`live()`, `rebuilds_app()` or `needs_restart()`, so no setting can lack one) and optional CLI
flags. `SETTINGS` is derived from those fields, and everything else -- the loader,
the flags of `reactor serve`, conf/reactor.toml, the README table -- is derived from `SETTINGS`
(see reactor.ops.config). Adding a setting means adding one field here.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from pathlib import Path
from typing import Any

from reactor.conn.listener import ListenerOptions
from reactor.ops.app_kinds import AppTarget, ImportPaths
from reactor.ops.kinds import (
    Account,
    Bool,
    Choice,
    Int,
    Kind,
    Listen,
    ListenerTables,
    LogTarget,
    MediaTypes,
    OptionalPath,
    Seconds,
    Umask,
    Workers,
)
from reactor.ops.lb_kinds import Networks, OptionalListen, SecondsOrZero, UrlPath
from reactor.ops.static_kinds import MimeOverrides, Mounts, MountText
from reactor.ops.tls_kinds import INTERMEDIATE_CIPHERS, Certificates, CipherList

DEFAULT_CONFIG_PATH = "/etc/reactor/reactor.toml"  # read when it exists and no --config
MiB = 1 << 20
TiB = 1 << 40


# --- declarations ------------------------------------------------------------------------------


class Reload(Enum):
    """What a SIGHUP reload does with a changed value of a setting."""

    LIVE = "live"
    """Applied to the running server: new connections and requests see it."""
    APP = "app"
    """The application is rebuilt from the new values and swapped in."""
    RESTART = "restart"
    """Cannot change in a running process: the reload logs a warning naming it."""


@dataclass(frozen=True, slots=True)
class Spec:
    """What a section field's metadata says about its setting."""

    kind: Kind
    doc: str
    reload: Reload
    flags: tuple[str, ...] = ()
    metavar: str | None = None
    example: str | None = None  # shown, commented out, for settings unset by default


def setting(default: object, kind: Kind, doc: str, *flags: str, reload: Reload,
            metavar: str | None = None, example: str | None = None) -> Any:
    """Declare a setting as a dataclass field: its default, kind, description, what a reload
    does with it, and its CLI flags."""
    spec = Spec(kind, doc, reload, flags, metavar, example)
    return field(default=default, metadata={"setting": spec})


def live(default: object, kind: Kind, doc: str, *flags: str, metavar: str | None = None,
         example: str | None = None) -> Any:
    """A setting a reload applies to the running server (Reload.LIVE)."""
    return setting(default, kind, doc, *flags, reload=Reload.LIVE, metavar=metavar,
                   example=example)


def rebuilds_app(default: object, kind: Kind, doc: str, *flags: str, metavar: str | None = None,
                 example: str | None = None) -> Any:
    """A setting of the application: a reload that changes it rebuilds the app (Reload.APP)."""
    return setting(default, kind, doc, *flags, reload=Reload.APP, metavar=metavar,
                   example=example)


def needs_restart(default: object, kind: Kind, doc: str, *flags: str,
                  metavar: str | None = None, example: str | None = None) -> Any:
    """A setting only a restart applies; a reload that changes it warns (Reload.RESTART)."""
    return setting(default, kind, doc, *flags, reload=Reload.RESTART, metavar=metavar,
                   example=example)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Listening sockets, connections and processes."""

    listen: tuple[str, ...] = live(
        ("127.0.0.1:4221",), Listen(),
        'Addresses to listen on, "HOST:PORT"; IPv6 as "[::1]:8080"; port 0 = any free port.',
        "--host", "--port")
    listeners: tuple[ListenerOptions, ...] = live(
        (), ListenerTables(),
        "More listeners: [[server.listeners]] tables with an address (and per-listener options).")
    backlog: int = live(1024, Int(1, 65535), "Length of each listening socket's accept queue.")
    max_connections: int = live(
        10000, Int(1, 1_000_000),
        "Open connections per worker; beyond it the oldest idle one (keep-alive, or silent"
        " since it opened) is closed to make room, else the new one gets a 503.")
    pool_threads: int = needs_restart(
        4, Int(1, 256), "Threads per worker running blocking handlers, file reads, compression.")
    workers: int = needs_restart(
        1, Workers(1, 1024), 'Worker processes; "auto" = one per CPU.', "--workers", metavar="N")
    busy_poll_us: int = live(
        0, Int(0, 100_000),
        "Longest time in microseconds to poll without sleeping after handling I/O (adapts"
        " to the traffic; lower latency, more CPU); 0 = off.")
    tokens: bool = live(
        True, Bool(),
        'Name the version in the Server field ("reactor/0.1.0"); false = "reactor" only'
        " (nginx's server_tokens).")


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """Request size limits; a request over one is answered 4xx and the connection closed."""

    max_request_line: int = live(
        8192, Int(1, MiB), "Longest request line in bytes (414 beyond).")
    max_header_bytes: int = live(
        32768, Int(1, 16 * MiB), "Largest header block in bytes (431 beyond).")
    max_header_fields: int = live(
        100, Int(1, 10_000), "Most header fields in one request (431 beyond).")
    max_body_bytes: int = live(
        16 * MiB, Int(1, TiB), "Largest request body in bytes (413 beyond).")


@dataclass(frozen=True, slots=True)
class TimeoutsConfig:
    """Timeouts in seconds."""

    header_s: float = live(20.0, Seconds(), "Time to receive a request's line and headers.")
    keepalive_s: float = live(75.0, Seconds(), "Idle time allowed between keep-alive requests.")
    body_s: float = live(60.0, Seconds(), "Time allowed between two reads of a request body.")
    write_s: float = live(
        60.0, Seconds(), "Time allowed for a stalled response write to make progress.")
    shutdown_s: float = live(
        30.0, Seconds(), "Graceful stop: time in-flight requests get before connections close.")
    drain_s: float = live(
        0.0, SecondsOrZero(),
        "On SIGTERM: /readyz answers 503 and listeners keep accepting this long before the"
        " graceful stop.")
    proxy_header_s: float = live(
        5.0, Seconds(), "Time a PROXY-protocol connection has to send its header.")
    tls_handshake_s: float = live(
        10.0, Seconds(), "Time a client gets to complete the TLS handshake.")


@dataclass(frozen=True, slots=True)
class FilesConfig:
    """The file handlers (/files/...)."""

    directory: Path | None = rebuilds_app(  # noqa: RUF009 -- a dataclasses.field()
        None, OptionalPath(directory=True),
        "Directory served under /files/; unset = file handlers off. Must exist.",
        "--directory", metavar="DIR", example="/srv/reactor/files")
    uploads: bool = rebuilds_app(
        True, Bool(), "Allow POST /files/NAME to write into the directory.")


@dataclass(frozen=True, slots=True)
class StaticConfig:
    """Document roots served like nginx: index files, ranges, validators, sendfile."""

    root: Path | None = rebuilds_app(  # noqa: RUF009 -- a dataclasses.field()
        None, OptionalPath(directory=True),
        "Directory served under `prefix`; unset = no document root.", metavar="DIR",
        example="/srv/www")
    prefix: str = rebuilds_app(
        "/", MountText(key="prefix"), "URL path the root is mounted at; the built-in"
        " routes win over it, a mount answers before your own app.")
    index: str | None = rebuilds_app(
        "index.html", MountText(optional=True, key="index"),
        'File served for a directory URL; "" = none.')
    listing: bool = rebuilds_app(False, Bool(), "List directories without an index file.")
    symlinks: str = rebuilds_app(
        "deny-outside", Choice(("deny-outside", "follow", "deny")),
        "Symlinks: refuse those leading outside the root, follow all, or refuse all.")
    dotfiles: bool = rebuilds_app(False, Bool(), "Serve names starting with a dot.")
    cache_control: str | None = rebuilds_app(
        None, MountText(optional=True, key="cache_control"),
        "Cache-Control value on files; unset = none.",
        example="public, max-age=3600")
    max_ranges: int = rebuilds_app(16, Int(1, 1000), "Most ranges in one Range header (else 200).")
    mime_overrides: tuple[tuple[str, str], ...] = rebuilds_app(
        (), MimeOverrides(), 'Extra MIME types, e.g. { ".log" = "text/plain" }; with '
        'parameters sent as given ("text/html; charset=iso-8859-1"), else text types '
        'get charset=utf-8.')
    uploads: bool = rebuilds_app(
        False, Bool(), "Accept PUT and DELETE of files under the root (off: 405).")
    gzip_cache_bytes: int = rebuilds_app(
        64 * MiB, Int(0, TiB), "Memory for gzip-compressed copies of small static files.")
    gzip_cache_file_max: int = rebuilds_app(
        MiB, Int(0, TiB),
        "Largest file compressed into that cache (larger: gzipped as it is sent, chunked).")
    open_file_cache_bytes: int = rebuilds_app(
        4 * MiB, Int(0, TiB),
        "Memory per document root for the bytes of hot files up to 32 KiB and their gzip"
        " bodies, answered with the head in one write (larger files: sendfile).")
    mounts: tuple[dict[str, Any], ...] = rebuilds_app(
        (), Mounts(), "More document roots: [[static.mounts]] tables with the keys above.")


@dataclass(frozen=True, slots=True)
class CompressionConfig:
    """gzip response compression, when the client accepts it."""

    enabled: bool = rebuilds_app(True, Bool(), "Compress responses with gzip.")
    level: int = rebuilds_app(6, Int(1, 9), "zlib level: 1 fastest .. 9 smallest.")
    min_size: int = rebuilds_app(0, Int(0), "Smallest body in bytes worth compressing.")
    types: tuple[str, ...] = rebuilds_app(
        ("text/*", "application/json", "application/javascript", "application/xml",
         "image/svg+xml"), MediaTypes(), 'Media types to compress; "type/*" matches a family.')


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """HTTPS: TLS listeners, certificates chosen by SNI, client certificates, rotation."""

    listen: tuple[str, ...] = live(
        (), Listen(optional=True), 'Addresses serving HTTPS, "HOST:PORT"; empty = no HTTPS.',
        "--tls-port", metavar="PORT")
    cert: Path | None = live(  # noqa: RUF009 -- setting() is dataclasses.field()
        None, OptionalPath(), "Default certificate, PEM (the chain may follow the leaf).",
        "--cert", metavar="FILE", example="/etc/reactor/tls/fullchain.pem")
    key: Path | None = live(  # noqa: RUF009 -- setting() is dataclasses.field()
        None, OptionalPath(), "Private key of the default certificate, PEM.",
        "--key", metavar="FILE", example="/etc/reactor/tls/privkey.pem")
    key_password_file: Path | None = live(  # noqa: RUF009 -- setting() is dataclasses.field()
        None, OptionalPath(), "File holding the password of an encrypted key.",
        example="/etc/reactor/tls/key.pass")
    certificates: tuple[dict[str, Any], ...] = live(
        (), Certificates(),
        "Certificates chosen by SNI: [[tls.certificates]] tables with names, cert, key.")
    min_version: str = live("1.2", Choice(("1.2", "1.3")), "Oldest TLS version accepted.")
    ciphers: str = live(
        INTERMEDIATE_CIPHERS, CipherList(),
        "TLS 1.2 ciphers, OpenSSL syntax (TLS 1.3's are all AEAD); default: Mozilla's "
        "intermediate, ECDHE + AEAD only.")
    client_ca: Path | None = live(  # noqa: RUF009 -- setting() is dataclasses.field()
        None, OptionalPath(), "CA certificates (PEM) that client certificates must chain to.",
        example="/etc/reactor/tls/clients-ca.pem")
    verify_client: str = live(
        "none", Choice(("none", "optional", "required")),
        "Client certificates: not asked, verified when sent, or required.")
    hsts_max_age: int = live(
        0, Int(0, 10 * 365 * 86400),
        "Strict-Transport-Security max-age on HTTPS responses, seconds; 0 = no header.")
    redirect_http: bool = live(
        False, Bool(), "Plain-HTTP listeners answer 308 with the https URL.")
    watch: bool = live(
        False, Bool(), "Check the certificate files every few seconds; reload on change.")


@dataclass(frozen=True, slots=True)
class WebSocketConfig:
    """WebSocket sessions (/ws/echo and app routes): keep-alive pings, limits, deflate."""

    ping_interval_s: float = live(
        20.0, SecondsOrZero(), "Send a ping after this long; 0 = no keep-alive pings.")
    ping_timeout_s: float = live(
        20.0, Seconds(), "Close a session whose pong has not come back in this time.")
    max_message_bytes: int = live(
        MiB, Int(1, TiB), "Largest message in bytes, after inflating (close 1009 beyond).")
    deflate: bool = live(True, Bool(), "Offer permessage-deflate compression (RFC 7692).")


@dataclass(frozen=True, slots=True)
class LogConfig:
    """Logging: one JSON line per request (access) plus an error log."""

    access: str = live(
        "-", LogTarget(), 'Access log: file path, "-" = stdout, "stderr" or "off".',
        "--log", metavar="FILE")
    error: str = live(
        "stderr", LogTarget(), 'Error log: file path, "-" = stdout, "stderr" or "off".',
        "--error-log", metavar="FILE")
    level: str = live(
        "info", Choice(("debug", "info", "warning", "error")), "Least severe error-log level.",
        "--log-level", metavar="LEVEL")
    format: str = live(
        "json", Choice(("json", "console")), "Log line format: JSON lines or human-readable.")


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    """Daemon mode (--daemon) and privileges."""

    pidfile: Path | None = needs_restart(  # noqa: RUF009 -- a dataclasses.field()
        None, OptionalPath(),
        "PID file, written while serving (daemon or not), removed at exit; unset = none.",
        "--pidfile", metavar="FILE", example="/run/reactor.pid")
    user: str | None = needs_restart(
        None, Account(), "Switch to this user after binding; unset = stay.", example="www-data")
    group: str | None = needs_restart(
        None, Account(group=True), "Switch to this group after binding; unset = the user's.",
        example="www-data")
    umask: int = needs_restart(0o022, Umask(), "File mode creation mask, octal.")


@dataclass(frozen=True, slots=True)
class AppConfig:
    """Your code: a native reactor App or a WSGI app, imported at start-up (else built-ins)."""

    # Imported once per start (before workers fork): a reload cannot swap the code.
    native: str | None = needs_restart(
        None, AppTarget(), 'Native app: "module:app" or "module:make_app()"; unset = built-in.',
        "--app", metavar="MODULE:APP", example="myproject.web:app")
    wsgi: str | None = needs_restart(
        None, AppTarget(), 'WSGI (PEP 3333) app to host instead: "module:app".',
        "--wsgi", metavar="MODULE:APP", example="myproject.wsgi:application")
    path: tuple[Path, ...] = needs_restart(
        (), ImportPaths(), "Directories searched for the app's module before the working dir.",
        "--app-dir", metavar="DIR")
    spool_bytes: int = rebuilds_app(
        MiB, Int(0, TiB), "Request bodies larger (or chunked) go to a temp file for the app.")


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """Load balancers in front: the PROXY protocol and forwarding headers of trusted proxies."""

    protocol: bool = live(
        False, Bool(), "Every listener requires a PROXY protocol (v1/v2) header first.",
        "--proxy-protocol")
    trusted: tuple[str, ...] = live(
        ("127.0.0.1", "::1"), Networks(),
        "Proxies (addresses, CIDR networks) whose PROXY header and forwarding headers count.")
    headers: str = live(
        "x-forwarded", Choice(("x-forwarded", "forwarded", "off")),
        "Forwarding headers read from trusted proxies: X-Forwarded-*, RFC 7239, or none.")


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """Health endpoints for load balancers, answered before any application route."""

    livez: str = live("/livez", UrlPath(), 'Liveness path: 200 while the loop runs; "" = off.')
    readyz: str = live(
        "/readyz", UrlPath(), 'Readiness path: 200 serving, 503 starting/draining; "" = off.')
    log: bool = live(False, Bool(), "Write health-check requests to the access log.")


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """Prometheus metrics on a listener of their own (each worker: port + worker number)."""

    listen: str | None = needs_restart(
        None, OptionalListen(), '"HOST:PORT" serving /metrics; unset = off.',
        example="127.0.0.1:9464")


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration: one frozen section object per [section] of the file."""

    server: ServerConfig = field(default_factory=ServerConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    timeouts: TimeoutsConfig = field(default_factory=TimeoutsConfig)
    files: FilesConfig = field(default_factory=FilesConfig)
    static: StaticConfig = field(default_factory=StaticConfig)
    compression: CompressionConfig = field(default_factory=CompressionConfig)
    app: AppConfig = field(default_factory=AppConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    websocket: WebSocketConfig = field(default_factory=WebSocketConfig)
    log: LogConfig = field(default_factory=LogConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)


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
    reload: Reload

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
            spec.example, spec.reload)
    for section, cls in SECTION_CLASSES.items()
    for f in fields(cls)
    for spec in [f.metadata["setting"]]
)
BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}


def reload_class(name: str) -> Reload:
    """What a reload does with the setting `name` ("static.root")."""
    return BY_NAME[name].reload


def pending_restart(running: Config, loaded: Config) -> list[str]:
    """The restart-only settings whose `loaded` value differs from the `running` one."""
    return [s.name for s in SETTINGS if s.reload is Reload.RESTART
            and getattr(getattr(loaded, s.section), s.key)
            != getattr(getattr(running, s.section), s.key)]


def keep_running(running: Config, loaded: Config, *, applied: Container[str] = ()) -> Config:
    """`loaded` with every restart-only setting at its `running` value, but those named in
    `applied` (new workers pick those up): what a reload can apply. Without it a later,
    unrelated reload would pick up a restart-only change (a new [app] target imported by
    the rebuild) that the earlier reload said waits for a restart."""
    sections: dict[str, Any] = {}
    for name in pending_restart(running, loaded):
        if name in applied:
            continue
        section, key = name.split(".", 1)
        values = sections.setdefault(section, {})
        values[key] = getattr(getattr(running, section), key)
    return replace(loaded, **{section: replace(getattr(loaded, section), **values)
                              for section, values in sections.items()})


def listener_options(server: ServerConfig, proxy_protocol: bool = False
                     ) -> tuple[ListenerOptions, ...]:
    """Every listener to bind: `server.listen` addresses (plain options), then the
    `[[server.listeners]]` tables. The loader refuses an address that is in both.
    `proxy_protocol` ([proxy] protocol) turns the PROXY header on for every listener."""
    plain = (ListenerOptions(address, proxy_protocol=proxy_protocol)
             for address in server.listen)
    tables = (replace(options, proxy_protocol=True) if proxy_protocol else options
              for options in server.listeners)
    return (*plain, *tables)
