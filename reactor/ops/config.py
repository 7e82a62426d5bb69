"""Configuration loading: reactor.toml, environment and flags merged into one validated Config.

Strategy: every setting is declared once in reactor.ops.settings. Values arrive in layers --
built-in defaults < the TOML file < environment (`REACTOR_<SECTION>_<KEY>`) < command-line
flags -- and each layer is validated where it comes from, so a `ConfigError` names its source:
`conf/x.toml:12: compression.min_size: must be an integer >= 0, got "big"`,
`environment REACTOR_SERVER_BACKLOG: server.backlog: ...`, `command line --port: ...`.
The merged values remember their origin ("default", "file:PATH", "env:VAR", "cli:--flag") for
`reactor print-config`. The same declarations give the `reactor serve` flags
(`add_serve_arguments`), conf/reactor.toml (`render_default_toml`) and the README table
(`render_settings_table`, both in reactor.ops.config_render); `python -m reactor.ops.config
default-toml > conf/reactor.toml` regenerates the file.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import stat
import sys
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TextIO

from reactor.ops.config_render import (
    format_effective,
    render_default_toml,
    render_settings_table,
)
from reactor.ops.kinds import (
    WILDCARD_CLASH,
    Bool,
    Invalid,
    canonical_listen,
    format_listen,
    host_error,
    parse_listen,
    shares_port,
    show,
    toml_string,
    unbindable,
)
from reactor.ops.logging import probe_target
from reactor.ops.settings import (
    BY_NAME,
    DEFAULT_CONFIG_PATH,
    SECTION_CLASSES,
    SETTINGS,
    CompressionConfig,
    Config,
    DaemonConfig,
    FilesConfig,
    LimitsConfig,
    LogConfig,
    ServerConfig,
    Setting,
    TimeoutsConfig,
)

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "CompressionConfig",
    "Config",
    "ConfigError",
    "ConfigSource",
    "DaemonConfig",
    "FilesConfig",
    "LimitsConfig",
    "LogConfig",
    "ServerConfig",
    "TimeoutsConfig",
    "add_check_config_arguments",
    "add_serve_arguments",
    "find_config_file",
    "format_effective",
    "load_config",
    "load_config_with_origins",
    "parse_listen",
    "render_default_toml",
    "render_settings_table",
    "run_check_config",
    "run_print_config",
]

ENV_PREFIX = "REACTOR_"
LISTEN = "server.listen"  # set by the --host/--port pair, not by one flag
LISTENERS = "server.listeners"
METRICS_LISTEN = "metrics.listen"
WORKERS = "server.workers"
TLS_LISTEN = "tls.listen"
TLS_LISTEN = "tls.listen"  # set by --tls-port, on the host of --host (or of server.listen)

# "section.key" -> (stored value, origin)
Layer = dict[str, tuple[Any, str]]


class ConfigError(Exception):
    """A configuration value is missing, malformed or out of range; str() is one line.

    `source` is the file path, "environment VAR" or "command line --flag"; `line` the file line
    when known; `key` the setting ("limits.max_body_bytes") or section; `reason` says what is
    wrong.
    """

    def __init__(self, source: str, reason: str, *, key: str | None = None,
                 line: int | None = None) -> None:
        super().__init__(source, reason, key, line)
        self.source = source
        self.reason = reason
        self.key = key
        self.line = line

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        text = ": ".join(part for part in (where, self.key, self.reason) if part)
        return text.replace("\r", "\\r").replace("\n", "\\n")


# --- the TOML file -------------------------------------------------------------------------------

_HEADER = re.compile(r"\s*\[\[?\s*([^\]]+?)\s*\]")
_KEY_LINE = re.compile(r"\s*([A-Za-z0-9_\-.\"' ]+?)\s*=")


def _dotted(text: str) -> list[str]:
    return [part.strip().strip("\"'") for part in text.split(".")]


def find_line(text: str, section: str, key: str | None = None) -> int | None:
    """The line number defining `section` (or `section.key`) in TOML `text`, best effort.

    Understands `[section]` tables with `key = ...` lines, dotted keys (`section.key = ...`) and
    `section = {...}` (whose line is returned for any of its keys).
    """
    table: list[str] = []
    section_line = None
    for number, line in enumerate(text.splitlines(), 1):
        header = _HEADER.match(line)
        if header:
            table = _dotted(header.group(1))
            if key is not None and table[:2] == [section, key]:
                return number  # `[section.key]`: a table where a setting was expected
            if table[0] == section and section_line is None:
                section_line = number
            continue
        match = _KEY_LINE.match(line)
        if match is None:
            continue
        path = table + _dotted(match.group(1))
        if path[0] == section and section_line is None:
            section_line = number
        if key is not None and path[:2] == [section, key]:
            return number
    return section_line


def find_item_line(text: str, section: str, key: str, index: int, item_key: str | None
                   ) -> int | None:
    """The line of `item_key` in the `index`-th `[[section.key]]` table of TOML `text` (the
    table's header line when `item_key` is None), else the line of `section.key`."""
    seen = -1
    inside = False
    for number, line in enumerate(text.splitlines(), 1):
        header = _HEADER.match(line)
        if header:
            inside = line.lstrip().startswith("[[") and _dotted(header.group(1)) == [section, key]
            if inside:
                seen += 1
                if seen == index and item_key is None:
                    return number
            continue
        match = _KEY_LINE.match(line) if inside and seen == index else None
        if match is not None and _dotted(match.group(1)) == [item_key]:
            return number
    return find_line(text, section, key)


_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


def _syntax_error(path: str, message: str) -> ConfigError:
    """tomllib's "Invalid value (at line 2, column 11)" as `path:2: TOML syntax error: ...`."""
    match = _POSITION.search(message)
    if match is None:
        return ConfigError(path, f"TOML syntax error: {message}")
    reason = f"TOML syntax error: {message[:match.start()]} (column {match.group(2)})"
    return ConfigError(path, reason, line=int(match.group(1)))


def _suggest_section(section: str) -> str:
    close = difflib.get_close_matches(section, SECTION_CLASSES, n=1)
    return f"; did you mean [{close[0]}]?" if close else ""


# What other servers call the address (gunicorn's `bind`, uvicorn's `host`/`port`): the
# setting an operator reaching for these means, which no spelling distance would find.
_ADDRESS_WORDS = frozenset({"host", "port", "bind", "address", "addr"})


def _closest(section: str, key: str) -> Setting | None:
    """The declared setting `key` was probably meant to be: a near spelling in `section`, or
    the same key in another section, or `listen` for another server's word for it."""
    if section == "server" and key in _ADDRESS_WORDS:
        return BY_NAME["server.listen"]
    keys = [s.key for s in SETTINGS if s.section == section]
    close = difflib.get_close_matches(key, keys, n=1)
    if close:
        return BY_NAME[f"{section}.{close[0]}"]
    return next((s for s in SETTINGS if s.key == key), None)


def _unknown_key(section: str, key: str) -> str:
    meant = _closest(section, key)
    if meant is None:
        return "unknown setting"
    if section == "server" and key in _ADDRESS_WORDS:
        return 'unknown setting; addresses go in server.listen = ["HOST:PORT", ...]'
    if meant.section != section:
        return f"unknown setting; it belongs in [{meant.section}]"
    return f"unknown setting; did you mean {meant.key}?"


def _read_text(path: str, cwd: Path) -> str:
    try:
        data = (cwd / path).read_bytes()
    except OSError as exc:
        raise ConfigError(path, f"cannot read configuration file: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(path, f"not UTF-8 text (byte {exc.start}: {exc.reason})") from None


def _has_nul(value: object) -> bool:
    """Whether a TOML value holds "\\u0000" in a string (in a list or table too): the OS
    refuses it in a path or user name, OpenSSL in a cipher list."""
    if isinstance(value, str):
        return "\0" in value
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    if isinstance(value, dict):
        return any(_has_nul(key) or _has_nul(item) for key, item in value.items())
    return False


def _read_file(path: str, cwd: Path) -> Layer:
    """The settings in the TOML file at `path` (relative to `cwd`), validated; relative paths
    in it resolve against its directory."""
    text = _read_text(path, cwd)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(path, str(exc)) from None
    base = Path(os.path.abspath(cwd / path)).parent
    layer: Layer = {}
    for section, table in data.items():
        line = find_line(text, section)
        owner = next((s for s in SETTINGS if s.key == section), None)
        if section not in SECTION_CLASSES and not isinstance(table, dict) and owner is not None:
            raise ConfigError(path, f"{section} is a setting of [{owner.section}]; put it under"
                              f" [{owner.section}]", key=section, line=line)
        if section not in SECTION_CLASSES:
            raise ConfigError(path, "unknown section" + _suggest_section(section), key=section,
                              line=line)
        if not isinstance(table, dict):
            raise ConfigError(path, f"must be a table ([{section}]), got {show(table)}",
                              key=section, line=line)
        for key, value in table.items():
            name = f"{section}.{key}"
            line = find_line(text, section, key)
            setting = BY_NAME.get(name)
            if setting is None:
                raise ConfigError(path, _unknown_key(section, key), key=name, line=line)
            if _has_nul(value):
                raise ConfigError(path, 'contains a NUL character ("\\u0000"), which no path,'
                                  " name or value can hold", key=name, line=line)
            try:
                layer[name] = (setting.kind.check(value, base), f"file:{path}")
            except Invalid as exc:
                if exc.item is not None:  # inside a [[section.key]] table: that key's line
                    line = find_item_line(text, section, key, *exc.item)
                raise ConfigError(path, str(exc), key=name, line=line) from None
    return layer


# --- environment and command line ----------------------------------------------------------------


def _check_text(setting: Setting, text: str, source: str, cwd: Path) -> Any:
    """Validate environment/flag `text` for `setting`; relative paths resolve against `cwd`."""
    try:
        return setting.kind.check(setting.kind.from_text(text), cwd)
    except Invalid as exc:
        raise ConfigError(source, str(exc), key=setting.name) from None


def _read_env(environ: Mapping[str, str], cwd: Path) -> Layer:
    """`REACTOR_<SECTION>_<KEY>` variables, validated.

    Variables that do not start with a section's prefix (say REACTOR_HOME) are not ours and are
    ignored; an unknown key under a section's prefix is a typo and an error.
    """
    by_env = {s.env: s for s in SETTINGS}
    layer: Layer = {}
    for var in sorted(environ):
        rest = var.removeprefix(ENV_PREFIX)
        section = next((s for s in SECTION_CLASSES if rest.startswith(s.upper() + "_")), None)
        if rest == var or section is None:
            continue
        source = f"environment {var}"
        setting = by_env.get(var)
        if setting is None:
            meant = _closest(section, rest[len(section) + 1:].lower())
            hint = f"; did you mean {meant.env}?" if meant else ""
            raise ConfigError(source, "unknown setting" + hint)
        layer[setting.name] = (_check_text(setting, environ[var], source, cwd), f"env:{var}")
    return layer


def _dest(flag: str) -> str:
    return flag.removeprefix("--").replace("-", "_")


def _cli_listen(args: argparse.Namespace, listen: tuple[str, ...]) -> tuple[Any, str] | None:
    """server.listen from --host/--port: the one address HOST:PORT, the missing half taken
    from the first address of `listen` (the value from the lower layers)."""
    host, port = getattr(args, "host", None), getattr(args, "port", None)
    if host is None and port is None:
        return None
    first_host, first_port = parse_listen(listen[0])
    if host is not None:
        host = host.strip().removeprefix("[").removesuffix("]")
        reason = host_error(host) or unbindable(host)
        if reason:
            raise ConfigError("command line --host", reason, key=LISTEN)
    if port is not None:
        text = port.strip()
        if not (text.isascii() and text.isdigit() and int(text) <= 65535):
            raise ConfigError("command line --port", f"must be a port 0..65535, got {show(port)}",
                              key=LISTEN)
    address = canonical_listen(
        format_listen(host or first_host, first_port if port is None else int(port)))
    flags = " ".join(flag for flag, given in (("--host", host), ("--port", port)) if given)
    return (address,), f"cli:{flags}"


def _cli_tls_listen(args: argparse.Namespace, listen: tuple[str, ...]
                    ) -> tuple[Any, str] | None:
    """tls.listen from --tls-port: HOST:PORT on the host of the plain listener `listen[0]`
    (after --host), so `--host 0.0.0.0 --port 80 --tls-port 443` serves both there."""
    port = getattr(args, "tls_port", None)
    if port is None:
        return None
    text = port.strip()
    if not (text.isascii() and text.isdigit() and int(text) <= 65535):
        raise ConfigError("command line --tls-port", f"must be a port 0..65535, got {show(port)}",
                          key=TLS_LISTEN)
    host = parse_listen(listen[0])[0]
    return (canonical_listen(format_listen(host, int(text))),), "cli:--tls-port"


def _read_cli(args: argparse.Namespace, below: Layer, cwd: Path) -> Layer:
    """The flags given on the command line (those left at None were not), validated."""
    layer: Layer = {}
    for setting in SETTINGS:
        if setting.name in (LISTEN, TLS_LISTEN):
            continue
        for flag in setting.flags:
            text = getattr(args, _dest(flag), None)
            if text is not None:
                value = _check_text(setting, text, f"command line {flag}", cwd)
                layer[setting.name] = (value, f"cli:{flag}")
    listen = _cli_listen(args, below[LISTEN][0])
    if listen is not None:
        layer[LISTEN] = listen
    tls_listen = _cli_tls_listen(args, (listen or below[LISTEN])[0])
    if tls_listen is not None:
        layer[TLS_LISTEN] = tls_listen
    return layer


# --- loading -------------------------------------------------------------------------------------


def find_config_file(args: argparse.Namespace | None = None, *,
                     default_path: str = DEFAULT_CONFIG_PATH) -> str | None:
    """The configuration file to read: --config FILE, else `default_path` if it exists;
    None with --no-config or when there is none. A default path this user cannot even look
    at (its directory not searchable, say /etc/reactor 0750) counts as there: reading it
    says why it cannot be used, instead of serving the built-in defaults in its place."""
    if args is not None and getattr(args, "no_config", False):
        return None
    given = getattr(args, "config", None)
    if given is not None:
        return str(given)
    try:
        os.stat(default_path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:  # EACCES, ELOOP, ...: there, but not for us
        pass
    return default_path


def _build(values: Layer) -> Config:
    sections: dict[str, dict[str, Any]] = {name: {} for name in SECTION_CLASSES}
    for name, (value, _origin) in values.items():
        section, key = name.split(".", 1)
        sections[section][key] = value
    return Config(**{name: cls(**sections[name]) for name, cls in SECTION_CLASSES.items()})


def load_config_with_origins(args: argparse.Namespace | None = None,
                             environ: Mapping[str, str] | None = None, *,
                             default_path: str = DEFAULT_CONFIG_PATH, cwd: str | None = None,
                             ) -> tuple[Config, dict[str, str]]:
    """The effective Config and, per "section.key", where its value came from: "default",
    "file:PATH", "env:VARIABLE" or "cli:--flag". Raises ConfigError.

    Relative paths from --config, the environment and flags resolve against `cwd` (default: the
    current directory); a reload after daemonizing (which changes to /) passes the startup one.
    """
    base = Path(os.getcwd() if cwd is None else cwd)
    values: Layer = {s.name: (s.default, "default") for s in SETTINGS}
    path = find_config_file(args, default_path=default_path)
    if path is not None:
        values.update(_read_file(path, base))
    values.update(_read_env(os.environ if environ is None else environ, base))
    if args is not None:
        values.update(_read_cli(args, values, base))
    _check_listeners(values, base)
    _check_wildcards(values, base)
    _check_metrics_address(values, base)
    _check_health_paths(values, base)
    _check_mounts(values, base)
    config = _build(values)
    _check_tls(config, values, base)
    return config, {name: origin for name, (_value, origin) in values.items()}


def _check_listeners(values: Layer, cwd: Path) -> None:
    """An address in both `server.listen` and `[[server.listeners]]` would be bound twice."""
    listen = values[LISTEN][0]
    tables, origin = values[LISTENERS]
    index = next((i for i, options in enumerate(tables) if options.address in listen), None)
    if index is not None:
        raise _error_at(
            origin, LISTENERS, cwd,
            f"listener #{index + 1}: {tables[index].address} is also in server.listen;"
            " list each address once",
            lambda text: find_item_line(text, "server", "listeners", index, "address"))


def _check_wildcards(values: Layer, cwd: Path) -> None:
    """A wildcard address and another of its family on one port, in two of the server's
    address lists (or two listener tables), would fail at start-up as "address in use"."""
    tables = values[LISTENERS][0]
    entries: list[tuple[str, str, Callable[[str], int | None]]] = [
        *((address, LISTEN, lambda text: find_line(text, "server", "listen"))
          for address in values[LISTEN][0]),
        *((options.address, LISTENERS,
           partial(find_item_line, section="server", key="listeners", index=index,
                   item_key="address"))
          for index, options in enumerate(tables)),
        *((address, TLS_LISTEN, lambda text: find_line(text, "tls", "listen"))
          for address in values[TLS_LISTEN][0])]
    for later, (address, key, line_in) in enumerate(entries):
        for earlier, _, _ in entries[:later]:
            if earlier != address and shares_port(earlier, address):
                raise _error_at(values[key][1], key, cwd,
                                f"{earlier} and {address} {WILDCARD_CLASH}", line_in)


def _check_metrics_address(values: Layer, cwd: Path) -> None:
    """The metrics listener (each worker's: port + its number) on an address the server
    listens on would fail at start-up as "address in use", as if another process held it."""
    metrics, origin = values[METRICS_LISTEN]
    host, port = parse_listen(metrics) if metrics is not None else ("", 0)
    if not port:  # off, or port 0: any free port
        return
    taken = (*values[LISTEN][0], *(options.address for options in values[LISTENERS][0]),
             *values[TLS_LISTEN][0])
    for worker in range(values[WORKERS][0]):
        address = format_listen(host, port + worker)
        server = next((other for other in taken if shares_port(other, address)), None)
        if server is None:
            continue
        whose = "" if worker == 0 else f" (worker {worker}'s metrics port, port + {worker})"
        what = ("is also a server address" if server == address else
                f"and the server address {server} cannot both be bound (a wildcard address"
                " takes its port on every address of its family)")
        raise _error_at(
            origin, METRICS_LISTEN, cwd,
            f"{address}{whose} {what} (server.listen, server.listeners or tls.listen);"
            " metrics need an address of their own",
            lambda text: find_line(text, "metrics", "listen"))


def _check_health_paths(values: Layer, cwd: Path) -> None:
    """One path for both health checks would always answer /livez's 200: /readyz's 503
    (starting, draining) would never be seen, and a drain would send no balancer away."""
    livez, livez_origin = values["health.livez"]
    readyz, readyz_origin = values["health.readyz"]
    if not livez or livez != readyz:
        return
    key, origin = (("health.livez", livez_origin) if readyz_origin == "default"
                   else ("health.readyz", readyz_origin))
    raise _error_at(
        origin, key, cwd,
        f"{livez} is both health.livez and health.readyz; readiness (503 while starting or "
        "draining) needs a path of its own",
        lambda text: find_line(text, "health", key.partition(".")[2]))


def _check_mounts(values: Layer, cwd: Path) -> None:
    """Two document roots at one prefix (`[static] root` at `static.prefix`, the
    `[[static.mounts]]`): the router takes one mount per prefix."""
    mounted: dict[str, str] = {}
    if values["static.root"][0] is not None:
        mounted[values["static.prefix"][0].rstrip("/") or "/"] = "static.prefix"
    mounts, origin = values["static.mounts"]
    for index, mount in enumerate(mounts):
        prefix = mount["prefix"].rstrip("/") or "/"
        if prefix not in mounted:
            mounted[prefix] = f"mount #{index + 1}"
            continue
        raise _error_at(
            origin, "static.mounts", cwd,
            f"mount #{index + 1}: prefix {toml_string(mount['prefix'])} is already mounted"
            f" ({mounted[prefix]}); one document root per prefix",
            partial(find_item_line, section="static", key="mounts", index=index,
                    item_key="prefix"))


def _check_tls(config: Config, values: Layer, cwd: Path) -> None:
    """[tls] settings that contradict each other (tls.listen without a certificate, ...),
    named where the setting that makes it a problem came from, like any bad value."""
    from reactor.ops.tls import contradiction  # the ssl-using module, only when loading

    problem = contradiction(config)
    if problem is not None:
        section, key = problem.cause.split(".", 1)
        raise _error_at(values[problem.cause][1], problem.key, cwd, problem.reason,
                        lambda text: find_line(text, section, key))


def _error_at(origin: str, key: str, cwd: Path, reason: str,
              line_in: Callable[[str], int | None]) -> ConfigError:
    """The error for `key`, named where its value came from (`origin`): the file and the line
    `line_in` finds in its text, the environment variable, the command-line flag, or the
    configuration (a default)."""
    kind, _, where = origin.partition(":")
    if kind == "file":
        return ConfigError(where, reason, key=key, line=line_in(_read_text(where, cwd)))
    source = {"env": f"environment {where}", "cli": f"command line {where}"}.get(
        kind, "configuration")
    return ConfigError(source, reason, key=key)


def load_config(args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None,
                *, default_path: str = DEFAULT_CONFIG_PATH, cwd: str | None = None) -> Config:
    """The effective Config: defaults < file (--config, or `default_path` if it exists, unless
    --no-config) < environment (os.environ when None) < flags in `args`. Raises ConfigError."""
    return load_config_with_origins(args, environ, default_path=default_path, cwd=cwd)[0]


@dataclass(frozen=True)
class ConfigSource:
    """Where a running server's configuration comes from, kept for reloads: the parsed command
    line, the environment and the working directory as they were at start-up."""

    args: argparse.Namespace | None
    environ: Mapping[str, str]
    cwd: str
    default_path: str = DEFAULT_CONFIG_PATH

    @classmethod
    def capture(cls, args: argparse.Namespace | None,
                environ: Mapping[str, str] | None = None) -> ConfigSource:
        """The sources as they are now (a copy of the environment, the current directory)."""
        return cls(args, dict(os.environ if environ is None else environ), os.getcwd())

    def load(self) -> Config:
        """The effective Config from these sources, read afresh. Raises ConfigError."""
        return load_config(self.args, self.environ, default_path=self.default_path,
                           cwd=self.cwd)


# --- command line --------------------------------------------------------------------------------

_FLAG_HELP = {
    "--host": "listen on HOST only (port: --port, else the first server.listen port)",
    "--port": "listen on PORT only (host: --host, else the first server.listen host)",
    "--tls-port": "serve HTTPS on PORT (host: --host, else the first server.listen host);"
                  " needs --cert and --key",
}


def _flag_help(setting: Setting, flag: str) -> str:
    text = _FLAG_HELP.get(flag, setting.doc.rstrip("."))
    return f"{text} [{setting.name}, ${setting.env}]".replace("%", "%%")


def add_config_file_arguments(parser: argparse.ArgumentParser, *, allow_none: bool) -> None:
    """--config FILE (and --no-config when `allow_none`)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--config", metavar="FILE",
                       help=f"configuration file (default: {DEFAULT_CONFIG_PATH} if it exists)")
    if allow_none:
        group.add_argument("--no-config", action="store_true",
                           help="read no configuration file, even if the default exists")


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --config/--no-config and every declared setting flag to `parser` (all default None,
    so a flag not given does not override the file or environment)."""
    add_config_file_arguments(parser, allow_none=True)
    for setting in SETTINGS:
        for flag in setting.flags:
            if isinstance(setting.kind, Bool):  # a switch: given means true
                parser.add_argument(flag, dest=_dest(flag), action="store_const", const="true",
                                    default=None, help=_flag_help(setting, flag))
                continue
            metavar = setting.metavar or flag.removeprefix("--").upper()
            parser.add_argument(flag, dest=_dest(flag), metavar=metavar, default=None,
                                help=_flag_help(setting, flag))


def add_check_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --config FILE for `reactor check-config`."""
    add_config_file_arguments(parser, allow_none=False)


def run_check_config(args: argparse.Namespace, environ: Mapping[str, str] | None = None, *,
                     default_path: str = DEFAULT_CONFIG_PATH, stdout: TextIO | None = None,
                     stderr: TextIO | None = None) -> int:
    """`reactor check-config`: validate file + environment like `nginx -t`; exit code 0 or 2.

    Beyond the values it imports the [app] as `serve` does (from the working directory and
    app.path, running its module code), loads the certificates, opens the log files for
    appending and checks the pid file's directory, so what `serve` would refuse as a
    configuration error is refused here too. Errors go to stderr as
    `reactor: <the one-line reason>`, as `reactor serve` prints them.
    """
    from reactor.ops import apploader
    from reactor.ops.tls import TlsError, build_tls

    try:
        path = find_config_file(args, default_path=default_path)
        config = load_config(args, environ, default_path=default_path)
        apploader.load(config)  # serve's order: the app, then the certificates
        build_tls(config)  # every certificate/key pair loaded and checked
    except (ConfigError, apploader.AppLoadError, TlsError) as exc:
        print(f"reactor: {exc}", file=sys.stderr if stderr is None else stderr)
        return 2
    problem = probe_files(config)
    if problem is not None:
        print(f"reactor: {problem}", file=sys.stderr if stderr is None else stderr)
        return 2
    if path is None:
        message = (f"no configuration file ({default_path} does not exist); "
                   "built-in defaults test is successful")
    else:
        message = f"configuration file {path} test is successful"
    print(message, file=sys.stdout if stdout is None else stdout)
    return 0


def probe_files(config: Config) -> str | None:
    """The first file the configuration names that cannot be used, as one line; else None."""
    for target in (config.log.access, config.log.error):
        reason = probe_target(target)
        if reason is not None:
            return reason
    pidfile = config.daemon.pidfile
    return None if pidfile is None else probe_pidfile(pidfile)


def probe_pidfile(pidfile: Path) -> str | None:
    """Why a pid file cannot be created at `pidfile`, as one line; None if it can."""
    try:
        mode = os.stat(pidfile).st_mode
    except OSError:
        mode = None  # absent (or unreachable): the directory checks below say the rest
        if os.path.islink(pidfile):  # never written through (O_EXCL), never removed: ask
            return (f"cannot use pid file {pidfile}: it is a dangling symlink to"
                    f" {os.readlink(pidfile)}")
    if mode is not None and not stat.S_ISREG(mode):
        what = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        return f"cannot use pid file {pidfile}: it is {what}"
    directory = pidfile.parent
    if not directory.is_dir():
        return f"cannot create pid file {pidfile}: directory {directory} does not exist"
    if not os.access(directory, os.W_OK):
        return f"cannot create pid file {pidfile}: directory {directory} is not writable"
    return None


def run_print_config(args: argparse.Namespace, environ: Mapping[str, str] | None = None, *,
                     default_path: str = DEFAULT_CONFIG_PATH, stdout: TextIO | None = None,
                     stderr: TextIO | None = None) -> int:
    """`reactor print-config [serve flags]`: print the effective settings with their origins."""
    try:
        config, origins = load_config_with_origins(args, environ, default_path=default_path)
    except ConfigError as exc:
        print(f"reactor: {exc}", file=sys.stderr if stderr is None else stderr)
        return 2
    print(format_effective(config, origins), end="", file=sys.stdout if stdout is None else stdout)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m reactor.ops.config default-toml|settings-table`: print a generated text."""
    parser = argparse.ArgumentParser(prog="python -m reactor.ops.config")
    parser.add_argument("what", choices=["default-toml", "settings-table"])
    args = parser.parse_args(argv)
    sys.stdout.write(render_default_toml() if args.what == "default-toml"
                     else render_settings_table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
