"""Tests for reactor.ops.config: precedence, origins, error messages and the generated files."""

from __future__ import annotations

import argparse
import io
import json
import os
import pwd
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reactor.conn.listener import ListenerOptions
from reactor.ops.config import (
    Config,
    ConfigError,
    add_check_config_arguments,
    add_serve_arguments,
    format_effective,
    load_config,
    load_config_with_origins,
    parse_listen,
    render_default_toml,
    render_settings_table,
    run_check_config,
    run_print_config,
)
from reactor.ops.kinds import format_listen
from reactor.ops.settings import SETTINGS, listener_options
from tests.ops.serverproc import DEADLINE_S, server_env

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf" / "reactor.toml"


@pytest.fixture
def nowhere(tmp_path: Path) -> str:
    """A default config path that does not exist, so /etc never leaks into a test."""
    return str(tmp_path / "etc-reactor-absent.toml")


def serve_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    return parser.parse_args(list(argv))


def write(directory: Path, text: str, name: str = "reactor.toml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def value_of(config: Config, name: str) -> Any:
    section, key = name.split(".")
    return getattr(getattr(config, section), key)


def load_error(*argv: str, env: dict[str, str] | None = None, default_path: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(serve_args(*argv), env or {}, default_path=default_path)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- precedence and origins ----------------------------------------------------------------------

PRECEDENCE = [
    # name, file line in its section, env text, flags, value from file / env / flags
    ("server.workers", "workers = 2", "3", ["--workers", "4"], 2, 3, 4),
    ("log.level", 'level = "warning"', "ERROR", ["--log-level", "debug"], "warning", "error",
     "debug"),
    ("log.access", 'access = "off"', "stderr", ["--log", "-"], "off", "stderr", "-"),
    ("limits.max_body_bytes", "max_body_bytes = 100", "1000", [], 100, 1000, 1000),
    ("timeouts.header_s", "header_s = 5", "2.5", [], 5.0, 2.5, 2.5),
    ("compression.enabled", "enabled = false", "yes", [], False, True, True),
    ("compression.types", 'types = ["text/html"]', "application/json, text/css", [],
     ("text/html",), ("application/json", "text/css"), ("application/json", "text/css")),
    ("server.listen", 'listen = ["0.0.0.0:80"]', "127.0.0.1:81,[::1]:81", ["--port", "82"],
     ("0.0.0.0:80",), ("127.0.0.1:81", "[::1]:81"), ("127.0.0.1:82",)),
    ("daemon.umask", 'umask = "027"', "0o077", [], 0o027, 0o077, 0o077),
]


@pytest.mark.parametrize(("name", "line", "env_text", "flags", "from_file", "from_env",
                          "from_cli"), PRECEDENCE)
def test_precedence_default_file_env_cli(tmp_path: Path, nowhere: str, name: str, line: str,
                                         env_text: str, flags: list[str], from_file: Any,
                                         from_env: Any, from_cli: Any) -> None:
    section = name.split(".")[0]
    path = write(tmp_path, f"[{section}]\n{line}\n")
    var = "REACTOR_" + name.replace(".", "_").upper()
    default = value_of(Config(), name)
    steps = [
        ([], {}, default, "default"),
        (["--config", str(path)], {}, from_file, f"file:{path}"),
        (["--config", str(path)], {var: env_text}, from_env, f"env:{var}"),
        (["--config", str(path), *flags], {var: env_text}, from_cli,
         f"cli:{flags[0]}" if flags else f"env:{var}"),
    ]
    for argv, env, expected, origin in steps:
        config, origins = load_config_with_origins(serve_args(*argv), env, default_path=nowhere)
        assert value_of(config, name) == expected, (argv, env)
        assert origins[name] == origin


def test_origins_name_every_setting_and_its_source(tmp_path: Path, nowhere: str) -> None:
    path = write(tmp_path, "[server]\nbacklog = 10\n[log]\nlevel = \"debug\"\n")
    env = {"REACTOR_LOG_LEVEL": "error", "REACTOR_COMPRESSION_LEVEL": "9", "HOME": "/root"}
    args = serve_args("--config", str(path), "--host", "::1", "--log", "off")
    config, origins = load_config_with_origins(args, env, default_path=nowhere)
    changed = {name: origin for name, origin in origins.items() if origin != "default"}
    assert changed == {
        "server.backlog": f"file:{path}",
        "log.level": "env:REACTOR_LOG_LEVEL",
        "compression.level": "env:REACTOR_COMPRESSION_LEVEL",
        "server.listen": "cli:--host",
        "log.access": "cli:--log",
    }
    assert set(origins) == {s.name for s in SETTINGS}
    assert config.server.listen == ("[::1]:4221",)


@pytest.mark.parametrize(("flags", "listen", "origin"), [
    (["--port", "9000"], ("0.0.0.0:9000",), "cli:--port"),
    (["--host", "::1"], ("[::1]:8000",), "cli:--host"),
    (["--host", "[::1]"], ("[::1]:8000",), "cli:--host"),
    (["--host", "10.0.0.1", "--port", "0"], ("10.0.0.1:0",), "cli:--host --port"),
    ([], ("0.0.0.0:8000", "[::]:8000"), "file"),
])
def test_host_and_port_replace_listen_with_one_address(tmp_path: Path, nowhere: str,
                                                       flags: list[str], listen: tuple[str, ...],
                                                       origin: str) -> None:
    path = write(tmp_path, '[server]\nlisten = ["0.0.0.0:8000", "[::]:8000"]\n')
    args = serve_args("--config", str(path), *flags)
    config, origins = load_config_with_origins(args, {}, default_path=nowhere)
    assert config.server.listen == listen
    assert origins["server.listen"].startswith(origin)


def test_relative_directory_resolves_against_file_dir_then_cwd(
        tmp_path: Path, nowhere: str, monkeypatch: pytest.MonkeyPatch) -> None:
    etc, cwd = tmp_path / "etc", tmp_path / "cwd"
    for directory in (etc / "www", cwd / "env-www", cwd / "cli-www"):
        directory.mkdir(parents=True)
    path = write(etc, '[files]\ndirectory = "www"\n')
    monkeypatch.chdir(cwd)
    args = serve_args("--config", str(path))
    assert load_config(args, {}, default_path=nowhere).files.directory == etc / "www"
    env = {"REACTOR_FILES_DIRECTORY": "env-www"}
    assert load_config(args, env, default_path=nowhere).files.directory == cwd / "env-www"
    args = serve_args("--config", str(path), "--directory", "cli-www")
    assert load_config(args, env, default_path=nowhere).files.directory == cwd / "cli-www"
    assert load_config(args, {}, default_path=nowhere).files.directory.is_absolute()


def test_cwd_anchors_relative_config_env_and_flag_paths(tmp_path: Path, nowhere: str) -> None:
    (tmp_path / "www").mkdir()
    write(tmp_path, "[server]\nbacklog = 9\n")
    args = serve_args("--config", "reactor.toml", "--directory", "www")
    env = {"REACTOR_LOG_ACCESS": "logs/access.log"}
    config, origins = load_config_with_origins(args, env, default_path=nowhere,
                                               cwd=str(tmp_path))
    assert config.server.backlog == 9
    assert origins["server.backlog"] == "file:reactor.toml"
    assert config.files.directory == tmp_path / "www"
    assert config.log.access == str(tmp_path / "logs" / "access.log")


def test_empty_env_value_unsets_an_optional_path(tmp_path: Path, nowhere: str) -> None:
    (tmp_path / "www").mkdir()
    path = write(tmp_path, '[files]\ndirectory = "www"\n')
    args = serve_args("--config", str(path))
    config = load_config(args, {"REACTOR_FILES_DIRECTORY": ""}, default_path=nowhere)
    assert config.files.directory is None


def test_log_file_paths_become_absolute(tmp_path: Path, nowhere: str) -> None:
    path = write(tmp_path, '[log]\naccess = "logs/access.log"\nerror = "stdout"\n')
    config = load_config(serve_args("--config", str(path)), {}, default_path=nowhere)
    assert config.log.access == str(tmp_path / "logs" / "access.log")
    assert config.log.error == "-"


def test_auto_workers_is_the_cpu_count(tmp_path: Path, nowhere: str) -> None:
    path = write(tmp_path, '[server]\nworkers = "auto"\n')
    cpus = os.cpu_count() or 1
    assert load_config(serve_args("--config", str(path)), {}, default_path=nowhere) \
        .server.workers == cpus
    env = {"REACTOR_SERVER_WORKERS": "auto"}
    assert load_config(None, env, default_path=nowhere).server.workers == cpus
    assert load_config(serve_args("--workers", "auto"), {}, default_path=nowhere) \
        .server.workers == cpus


def test_default_path_is_read_when_it_exists(tmp_path: Path) -> None:
    default = write(tmp_path, "[server]\nbacklog = 5\n")
    config, origins = load_config_with_origins(serve_args(), {}, default_path=str(default))
    assert config.server.backlog == 5
    assert origins["server.backlog"] == f"file:{default}"
    assert load_config(None, {}, default_path=str(default)).server.backlog == 5


def _as_nobody(work: Any) -> Any:
    """`work()` in a forked child running as nobody (this test process may be root, whom no
    permission stops), its JSON result sent back over a pipe."""
    nobody = pwd.getpwnam("nobody")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            os.write(write_end, json.dumps(work()).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        result = pipe.read()
    os.waitpid(pid, 0)
    return json.loads(result)


def test_a_default_path_this_user_cannot_search_is_an_error_not_the_defaults(
        tmp_path: Path) -> None:
    """/etc/reactor 0750 (TLS keys next to the file), `reactor check-config` run by someone
    outside its group: os.path.exists said False, so check-config reported "does not exist;
    built-in defaults test is successful" and serve served the defaults instead."""
    etc = tmp_path / "etc-reactor"
    etc.mkdir()
    default = write(etc, "[server]\nbacklog = 5\n")
    # readable, it passes (and every module check-config needs is imported before the fork)
    assert check_config([], {}, str(default))[0] == 0
    etc.chmod(0o700 if os.geteuid() == 0 else 0o000)
    try:
        if os.geteuid() == 0:
            result = _as_nobody(lambda: check_config([], {}, str(default)))
        else:
            result = list(check_config([], {}, str(default)))
    finally:
        etc.chmod(0o755)
    assert result == [2, "", f"reactor: {default}: cannot read configuration file:"
                             " Permission denied\n"]


def test_no_config_ignores_an_existing_default_path(tmp_path: Path) -> None:
    default = write(tmp_path, "[server]\nbacklog = 5\n")
    args = serve_args("--no-config")
    config = load_config(args, {"REACTOR_SERVER_POOL_THREADS": "8"}, default_path=str(default))
    assert config.server.backlog == 1024
    assert config.server.pool_threads == 8


def test_config_and_no_config_are_exclusive() -> None:
    with pytest.raises(SystemExit):
        serve_args("--config", "x.toml", "--no-config")


def test_flags_not_given_are_none() -> None:
    args = serve_args()
    for name in ("host", "port", "directory", "log", "error_log", "log_level", "workers",
                 "pidfile", "config"):
        assert getattr(args, name) is None
    assert args.no_config is False


def test_unrelated_reactor_env_vars_are_ignored(nowhere: str) -> None:
    env = {"REACTOR_HOME": "/x", "REACTOR": "1", "reactor_server_backlog": "x"}
    assert load_config(None, env, default_path=nowhere) == Config()


# --- error messages ------------------------------------------------------------------------------

FILE_ERRORS = [
    ("[limit]\nmax_body_bytes = 1\n", "1: limit: unknown section; did you mean [limits]?"),
    ("[nonsense]\n", "1: nonsense: unknown section"),
    ("# c\n[limits]\nmax_body_byte = 1\n",
     "3: limits.max_body_byte: unknown setting; did you mean max_body_bytes?"),
    ("[server]\nbacklog = 1\nmax_body_bytes = 1\n",
     "3: server.max_body_bytes: unknown setting; it belongs in [limits]"),
    ("[limits]\nzzz = 1\n", "2: limits.zzz: unknown setting"),
    ("[server]\nport = 8080\n",
     '2: server.port: unknown setting; addresses go in server.listen = ["HOST:PORT", ...]'),
    ("[server]\nbind = \"0.0.0.0:80\"\n",
     '2: server.bind: unknown setting; addresses go in server.listen = ["HOST:PORT", ...]'),
    ("[static]\nport = 1\n", "2: static.port: unknown setting"),
    # a sub-table of a section is reported at its own header, not the section's or a key's
    ("[server]\nbacklog = 1\n\n[server.x]\n", "4: server.x: unknown setting"),
    ("[server]\nbacklog = 1\n\n[server.x]\nfoo = 1\n", "4: server.x: unknown setting"),
    ("[limits]\n\n\nmax_body_bytes = \"big\"\n",
     '4: limits.max_body_bytes: must be an integer between 1 and 1099511627776, got "big"'),
    ("[server]\nbacklog = 0\n", "2: server.backlog: must be an integer between 1 and 65535, got 0"),
    ("[server]\nbacklog = true\n",
     "2: server.backlog: must be an integer between 1 and 65535, got true"),
    ("[compression]\nmin_size = -1\n", "2: compression.min_size: must be an integer >= 0, got -1"),
    ("[timeouts]\nheader_s = 0\n", "2: timeouts.header_s: must be a number of seconds > 0, got 0"),
    ("[timeouts]\nheader_s = inf\n",
     "2: timeouts.header_s: must be a number of seconds > 0, got inf"),
    ("timeouts = {body_s = \"1m\"}\n",
     '1: timeouts.body_s: must be a number of seconds > 0, got "1m"'),
    ("limits.max_header_fields = 0\n",
     "1: limits.max_header_fields: must be an integer between 1 and 10000, got 0"),
    ("[files]\nuploads = \"yes\"\n", '2: files.uploads: must be true or false, got "yes"'),
    ("[log]\nlevel = \"loud\"\n",
     '2: log.level: must be one of "debug", "info", "warning", "error", got "loud"'),
    ("[server]\nworkers = \"many\"\n",
     '2: server.workers: must be an integer between 1 and 1024 or "auto", got "many"'),
    ("[server]\nlisten = \"127.0.0.1:80\"\n",
     '2: server.listen: must be a list of "HOST:PORT" strings, got "127.0.0.1:80"'),
    ("[server]\nlisten = [\"::1:80\"]\n",
     '2: server.listen: "::1:80": put an IPv6 host in brackets, as "[::1]:8080"'),
    # IPv6 hosts no socket can bind (EINVAL at start-up, exit 1, after check-config said ok)
    ("[server]\nlisten = [\"[fe80::1%eth0]:80\"]\n",
     '2: server.listen: "[fe80::1%eth0]:80": IPv6 zone "%eth0" in a listen address (not'
     ' supported, as in nginx); listen on "[::]" or a global address'),
    ("[server]\nlisten = [\"[fe80::1]:80\"]\n",
     '2: server.listen: "[fe80::1]:80": "fe80::1" is link-local, which cannot be listened on'
     ' without a zone; listen on "[::]" or a global address'),
    ("[metrics]\nlisten = \"[::ffff:127.0.0.1]:9464\"\n",
     '2: metrics.listen: "[::ffff:127.0.0.1]:9464": "::ffff:127.0.0.1" is an IPv4-mapped'
     ' address (IPv6 listeners are IPv6-only); listen on "127.0.0.1" instead'),
    ("[server]\nlisten = [\"127.0.0.1:65536\"]\n",
     '2: server.listen: "127.0.0.1:65536": port must be 0..65535, got "65536"'),
    ("[server]\nlisten = [\"localhost\"]\n",
     '2: server.listen: "localhost" is not HOST:PORT (IPv6 as "[::1]:8080")'),
    ("[server]\nlisten = [\"300.1.1.1:80\"]\n",
     '2: server.listen: "300.1.1.1:80": bad IPv4 address "300.1.1.1"'),
    ("[server]\nlisten = []\n", "2: server.listen: must list at least one address"),
    ("[server]\nlisten = [\"a:1\", \"a:1\"]\n", '2: server.listen: "a:1" is listed twice'),
    # two spellings of one IPv6 address: refused here, not "address already in use" at bind
    ("[server]\nlisten = [\"[::1]:8080\", \"[0:0::1]:8080\"]\n",
     '2: server.listen: "[0:0::1]:8080" is listed twice (as "[::1]:8080")'),
    ("[compression]\ntypes = [\"html\"]\n",
     '2: compression.types: "html" is not "type/subtype" or "type/*"'),
    ("[daemon]\numask = 18\n",
     '2: daemon.umask: must be an octal string like "022" or "0o022", got 18'),
    ("[daemon]\numask = \"888\"\n",
     '2: daemon.umask: must be an octal string like "022" or "0o022", got "888"'),
    ("[daemon]\nuser = \"no-such-user-reactor\"\n",
     '2: daemon.user: unknown user "no-such-user-reactor"'),
    ("[daemon]\ngroup = \"no-such-group-reactor\"\n",
     '2: daemon.group: unknown group "no-such-group-reactor"'),
    ("[log]\nlevel = \"a\\nb\"\n", '2: log.level: must be one of "debug", "info", "warning", '
     '"error", got "a\\nb"'),
    ("[tls]\nciphers = \"RC5-MD7\"\n",
     '2: tls.ciphers: selects no cipher OpenSSL knows: "RC5-MD7"'),
    ("[tls]\nciphers = \"\"\n", '2: tls.ciphers: must be an OpenSSL cipher list string, got ""'),
    ("server = 5\n", "1: server: must be a table ([server]), got 5"),
    ("[server]\nbacklog = \n", "2: TOML syntax error: Invalid value (column 11)"),
    ("[server\n", "1: TOML syntax error: Expected ']' at the end of a table declaration "
     "(column 8)"),
]


@pytest.mark.parametrize(("text", "expected"), FILE_ERRORS)
def test_file_errors_name_file_line_key_and_reason(tmp_path: Path, nowhere: str, text: str,
                                                   expected: str) -> None:
    path = write(tmp_path, text)
    assert load_error("--config", str(path), default_path=nowhere) == f"{path}:{expected}"


def test_missing_directory_is_named_with_where_it_resolved(tmp_path: Path, nowhere: str) -> None:
    path = write(tmp_path, '[files]\nuploads = true\ndirectory = "www"\n')
    assert load_error("--config", str(path), default_path=nowhere) == (
        f'{path}:3: files.directory: directory "www" ({tmp_path / "www"}) does not exist')
    path = write(tmp_path, f'[files]\ndirectory = "{path}"\n')
    assert load_error("--config", str(path), default_path=nowhere) == (
        f'{path}:2: files.directory: "{path}" is not a directory')


def test_log_file_under_a_file_or_at_a_directory_is_an_error(tmp_path: Path,
                                                             nowhere: str) -> None:
    write(tmp_path, "", "logs")
    path = write(tmp_path, '[log]\nerror = "logs/error.log"\naccess = "new/access.log"\n')
    assert load_error("--config", str(path), default_path=nowhere) == (
        f'{path}:2: log.error: log file "logs/error.log" ({tmp_path / "logs" / "error.log"}): '
        f"{tmp_path / 'logs'} is not a directory")
    assert load_error("--log", str(tmp_path), default_path=nowhere) == (
        f'command line --log: log.access: log file "{tmp_path}" is a directory')


def test_unreadable_or_binary_file_is_an_error(tmp_path: Path, nowhere: str) -> None:
    missing = tmp_path / "missing.toml"
    assert load_error("--config", str(missing), default_path=nowhere) == (
        f"{missing}: cannot read configuration file: No such file or directory")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"[server]\n\xff\n")
    assert load_error("--config", str(binary), default_path=nowhere).startswith(
        f"{binary}: not UTF-8 text")


@pytest.mark.parametrize(("env", "expected"), [
    ({"REACTOR_SERVER_BACKLOG": "lots"},
     'environment REACTOR_SERVER_BACKLOG: server.backlog: must be an integer between 1 and '
     '65535, got "lots"'),
    ({"REACTOR_LIMITS_MAX_BODY_BYTE": "1"},
     "environment REACTOR_LIMITS_MAX_BODY_BYTE: unknown setting; did you mean "
     "REACTOR_LIMITS_MAX_BODY_BYTES?"),
    ({"REACTOR_SERVER_MAX_BODY_BYTES": "1"},
     "environment REACTOR_SERVER_MAX_BODY_BYTES: unknown setting; did you mean "
     "REACTOR_LIMITS_MAX_BODY_BYTES?"),
    ({"REACTOR_COMPRESSION_ENABLED": "maybe"},
     'environment REACTOR_COMPRESSION_ENABLED: compression.enabled: must be true or false, '
     'got "maybe"'),
    ({"REACTOR_SERVER_LISTEN": "127.0.0.1:80,[::1]80"},
     'environment REACTOR_SERVER_LISTEN: server.listen: "[::1]80": an IPv6 host in brackets'
     ' needs ":PORT" after the "]", as "[::1]:8080"'),
    ({"REACTOR_SERVER_LISTEN": "[::1]"},  # it was told to "put an IPv6 host in brackets"
     'environment REACTOR_SERVER_LISTEN: server.listen: "[::1]": an IPv6 host in brackets'
     ' needs ":PORT" after the "]", as "[::1]:8080"'),
    ({"REACTOR_LOG_LEVEL": "a\nb"},
     'environment REACTOR_LOG_LEVEL: log.level: must be one of "debug", "info", "warning", '
     '"error", got "a\\nb"'),
])
def test_env_errors_name_the_variable(nowhere: str, env: dict[str, str], expected: str) -> None:
    assert load_error(env=env, default_path=nowhere) == expected


@pytest.mark.parametrize(("flags", "expected"), [
    (["--port", "http"],
     'command line --port: server.listen: must be a port 0..65535, got "http"'),
    (["--port", "70000"],
     'command line --port: server.listen: must be a port 0..65535, got "70000"'),
    (["--host", "::1::1"], 'command line --host: server.listen: bad IPv6 address "::1::1"'),
    (["--host", "bad_host"], 'command line --host: server.listen: bad host name "bad_host"'),
    (["--host", "::1%lo"], 'command line --host: server.listen: IPv6 zone "%lo" in a listen'
     ' address (not supported, as in nginx); listen on "[::]" or a global address'),
    (["--log-level", "loud"],
     'command line --log-level: log.level: must be one of "debug", "info", "warning", "error", '
     'got "loud"'),
    (["--workers", "0"],
     'command line --workers: server.workers: must be an integer between 1 and 1024 or "auto", '
     "got 0"),
])
def test_cli_errors_name_the_flag(nowhere: str, flags: list[str], expected: str) -> None:
    assert load_error(*flags, default_path=nowhere) == expected


def test_cli_missing_directory_names_the_flag(tmp_path: Path, nowhere: str) -> None:
    missing = tmp_path / "nope"
    assert load_error("--directory", str(missing), default_path=nowhere) == (
        f'command line --directory: files.directory: directory "{missing}" does not exist')


def test_existing_user_and_numeric_ids_are_accepted(tmp_path: Path, nowhere: str) -> None:
    name = pwd.getpwuid(os.getuid()).pw_name
    path = write(tmp_path, f'[daemon]\nuser = "{name}"\ngroup = "12345"\n')
    config = load_config(serve_args("--config", str(path)), {}, default_path=nowhere)
    assert (config.daemon.user, config.daemon.group) == (name, "12345")


@pytest.mark.parametrize(("text", "expected"), [
    ('[daemon]\ngroup = "4294967296"\n',
     '2: daemon.group: must be a group id 0..4294967294, got "4294967296"'),
    ('[daemon]\nuser = "4294967295"\ngroup = "0"\n',
     '2: daemon.user: must be a user id 0..4294967294, got "4294967295"'),
])
def test_an_id_beyond_32_bits_is_one_line_before_serving(tmp_path: Path, text: str,
                                                         expected: str) -> None:
    """A numeric id no uid_t holds passed check-config, and `serve` (as root, after binding)
    died in os.setgroups/setuid with an OverflowError traceback, exit 1."""
    path = write(tmp_path, text)
    result = subprocess.run(
        [sys.executable, "-m", "reactor", "serve", "--config", str(path), "--port", "0",
         "--log", "off"], cwd=tmp_path, env=server_env(), capture_output=True, text=True,
        timeout=DEADLINE_S)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"reactor: {path}:{expected}\n"


# --- generated files and commands --------------------------------------------------------------


def test_repo_conf_file_is_the_rendering_of_the_declarations() -> None:
    assert CONF.read_text() == render_default_toml(), (
        "conf/reactor.toml is stale: python -m reactor.ops.config default-toml > "
        "conf/reactor.toml")


def test_loading_the_repo_conf_file_gives_the_defaults(nowhere: str) -> None:
    config, origins = load_config_with_origins(serve_args("--config", str(CONF)), {},
                                               default_path=nowhere)
    assert config == Config()
    unset = {s.name for s in SETTINGS if s.default is None}
    assert {name for name, origin in origins.items() if origin == "default"} == unset


def test_default_toml_documents_every_setting() -> None:
    text = render_default_toml()
    for setting in SETTINGS:
        assert f"# {setting.doc}\n" in text
        assert setting.env in text


def test_settings_table_has_one_row_per_setting() -> None:
    lines = render_settings_table().splitlines()
    assert lines[0] == "| setting | type | default | env var | flag | description |"
    assert len(lines) == 2 + len(SETTINGS)
    for line, setting in zip(lines[2:], SETTINGS, strict=True):
        assert line.startswith(f"| `{setting.name}` |")
        assert f"`{setting.env}`" in line
        assert line.count(" | ") == 5


def test_effective_config_round_trips_through_toml(tmp_path: Path, nowhere: str) -> None:
    (tmp_path / "www").mkdir()
    path = write(tmp_path, "\n".join([
        "[server]", 'listen = ["[::1]:80", "127.0.0.1:0"]', "backlog = 7",
        "[files]", 'directory = "www"', "uploads = false",
        "[compression]", 'types = ["text/plain"]',
        "[daemon]", 'umask = "0o077"', 'pidfile = "run/reactor.pid"',
    ]) + "\n")
    config, origins = load_config_with_origins(
        serve_args("--config", str(path), "--log-level", "debug"),
        {"REACTOR_TIMEOUTS_BODY_S": "1.5"}, default_path=nowhere)
    text = format_effective(config, origins)
    assert 'level = "debug"  # cli:--log-level' in text
    assert "body_s = 1.5  # env:REACTOR_TIMEOUTS_BODY_S" in text
    assert f"backlog = 7  # file:{path}" in text
    assert "# user: unset  # default" in text
    tomllib.loads(text)
    again = write(tmp_path, text, "effective.toml")
    assert load_config(serve_args("--config", str(again)), {}, default_path=nowhere) == config


def check_config(argv: list[str], env: dict[str, str], default_path: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    add_check_config_arguments(parser)
    out, err = io.StringIO(), io.StringIO()
    code = run_check_config(parser.parse_args(argv), env, default_path=default_path, stdout=out,
                            stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_check_config_reports_success_like_nginx(tmp_path: Path, nowhere: str) -> None:
    path = write(tmp_path, "[server]\nbacklog = 5\n")
    assert check_config(["--config", str(path)], {}, nowhere) == (
        0, f"configuration file {path} test is successful\n", "")
    code, out, _ = check_config([], {}, nowhere)
    assert (code, out) == (0, f"no configuration file ({nowhere} does not exist); built-in "
                              "defaults test is successful\n")
    assert check_config([], {}, str(path))[1] == f"configuration file {path} test is successful\n"


def test_check_config_prints_the_error_and_exits_2(tmp_path: Path, nowhere: str) -> None:
    path = write(tmp_path, "[server]\nbacklog = -5\n")
    assert check_config(["--config", str(path)], {}, nowhere) == (
        2, "", f"reactor: {path}:2: server.backlog: must be an integer between 1 and 65535, "
               "got -5\n")
    code, _, err = check_config([], {"REACTOR_LOG_FORMAT": "xml"}, nowhere)
    assert code == 2
    assert err.startswith("reactor: environment REACTOR_LOG_FORMAT: log.format:")


def test_print_config_prints_origins_or_the_error(nowhere: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = run_print_config(serve_args("--port", "8080"), {}, default_path=nowhere, stdout=out,
                            stderr=err)
    assert code == 0
    assert 'listen = ["127.0.0.1:8080"]  # cli:--port\n' in out.getvalue()
    assert tomllib.loads(out.getvalue())["server"]["listen"] == ["127.0.0.1:8080"]
    code = run_print_config(serve_args("--port", "x"), {}, default_path=nowhere, stdout=out,
                            stderr=err)
    assert code == 2
    assert err.getvalue().startswith("reactor: command line --port: server.listen:")


# --- listen addresses ----------------------------------------------------------------------------


@pytest.mark.parametrize(("addr", "expected"), [
    ("127.0.0.1:4221", ("127.0.0.1", 4221)),
    ("[::1]:80", ("::1", 80)),
    ("[::]:0", ("::", 0)),
    ("[fe80::1%eth0]:8080", ("fe80::1%eth0", 8080)),
    ("localhost:65535", ("localhost", 65535)),
    ("example.com.:443", ("example.com.", 443)),
    (" 0.0.0.0:80 ", ("0.0.0.0", 80)),
])
def test_parse_listen(addr: str, expected: tuple[str, int]) -> None:
    assert parse_listen(addr) == expected


@pytest.mark.parametrize("addr", [
    "", "80", ":80", "host:", "host:-1", "host:65536", "host:\uff18\uff10", "::1:80", "[::1]",
    "[::1]x:80", "[localhost]:80", "[::g]:80", "1.2.3:80", "-bad-:80", "a b:80", "a_b:80",
])
def test_parse_listen_rejects(addr: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(addr)


@given(st.ip_addresses(), st.integers(0, 65535))
def test_format_listen_round_trips(address: Any, port: int) -> None:
    host = str(address)
    assert parse_listen(format_listen(host, port)) == (host, port)


# --- [[server.listeners]], array-table lines, top-level keys, JSON environment values --------


def test_listeners_tables_add_to_listen(tmp_path: Path, nowhere: str) -> None:
    path = write(tmp_path, '[server]\nlisten = ["127.0.0.1:0"]\n\n[[server.listeners]]\n'
                           'address = "127.0.0.2:0"\n\n[[server.listeners]]\n'
                           'address = "[::1]:8080"\n')
    config = load_config(serve_args("--config", str(path)), {}, default_path=nowhere)
    assert [o.address for o in listener_options(config.server)] == [
        "127.0.0.1:0", "127.0.0.2:0", "[::1]:8080"]


@pytest.mark.parametrize(("text", "expected"), [
    ('[server]\nlisten = ["127.0.0.1:0"]\n\n[[server.listeners]]\naddress = "127.0.0.2:0"\n'
     '\n[[server.listeners]]\naddress = "127.0.0.3:0"\ntls = true\n',
     "9: server.listeners: listener #2: unknown key 'tls' (keys: address, proxy_protocol)"),
    ('[[server.listeners]]\nport = 80\n',
     "2: server.listeners: listener #1: unknown key 'port' (keys: address, proxy_protocol)"),
    ('[[server.listeners]]\n', "1: server.listeners: listener #1: needs an address"),
    ('[[server.listeners]]\naddress = "localhost"\n',
     '2: server.listeners: listener #1: "localhost" is not HOST:PORT (IPv6 as "[::1]:8080")'),
    ('[server]\nlisten = ["127.0.0.1:80"]\n[[server.listeners]]\naddress = "127.0.0.1:80"\n',
     "4: server.listeners: listener #1: 127.0.0.1:80 is also in server.listen;"
     " list each address once"),
    ('[[server.listeners]]\naddress = "127.0.0.2:80"\n[[server.listeners]]\n'
     'address = "127.0.0.2:80"\n',
     '4: server.listeners: listener #2: "127.0.0.2:80" is listed twice'),
    ('[server]\nlisten = ["[2001:db8::1]:80"]\n[[server.listeners]]\n'
     'address = "[2001:DB8:0::0001]:080"\n',
     "4: server.listeners: listener #1: [2001:db8::1]:80 is also in server.listen;"),
    ('[[server.listeners]]\naddress = "[::1]:80"\n[[server.listeners]]\n'
     'address = "[0::1]:80"\n',
     '4: server.listeners: listener #2: "[0::1]:80" is listed twice'),
    ('[server]\nlisten = ["[::1]:80"]\n\n[metrics]\nlisten = "[::0:1]:80"\n',
     "5: metrics.listen: [::1]:80 is also a server address"),
    # the metrics listener on a server address would fail as "address in use" at start-up
    ('[server]\nlisten = ["127.0.0.1:80"]\n\n[metrics]\nlisten = "127.0.0.1:80"\n',
     "5: metrics.listen: 127.0.0.1:80 is also a server address"),
    ('[[server.listeners]]\naddress = "127.0.0.2:81"\n[metrics]\nlisten = "127.0.0.2:81"\n',
     "4: metrics.listen: 127.0.0.2:81 is also a server address"),
    ('[server]\nlisten = ["127.0.0.1:9466"]\nworkers = 4\n[metrics]\nlisten = "127.0.0.1:9464"\n',
     "5: metrics.listen: 127.0.0.1:9466 (worker 2's metrics port, port + 2) is also a server"
     " address"),
    # a wildcard and another address of its family on one port: "address in use" at start-up
    ('[server]\nlisten = ["0.0.0.0:8080", "127.0.0.1:8080"]\n',
     '2: server.listen: "0.0.0.0:8080" and "127.0.0.1:8080" cannot both be bound: a wildcard'
     " address takes its port on every address of its family; list one of them"),
    ('[server]\nlisten = ["127.0.0.1:8080"]\n\n[tls]\nlisten = ["0.0.0.0:8080"]\n',
     "5: tls.listen: 127.0.0.1:8080 and 0.0.0.0:8080 cannot both be bound"),
    ('[[server.listeners]]\naddress = "[::1]:8081"\n[[server.listeners]]\n'
     'address = "[::]:8081"\n',
     "4: server.listeners: [::1]:8081 and [::]:8081 cannot both be bound"),
    ('[server]\nlisten = ["[::]:8080", "127.0.0.1:8080"]\n\n[metrics]\n'
     'listen = "0.0.0.0:8080"\n',
     "5: metrics.listen: 0.0.0.0:8080 and the server address 127.0.0.1:8080 cannot both be"
     " bound"),
    ('[[static.mounts]]\nprefix = "/a"\nroot = "."\n\n[[static.mounts]]\nprefix = "/b"\n'
     'root = "."\nindex = "i.html"\ncolour = "red"\n',
     "9: static.mounts: mount #2: unknown key 'colour'"),
    ('[[static.mounts]]\nprefix = "/a"\nroot = "."\nlisting = 1\n',
     "4: static.mounts: mount #1: listing must be true or false, got 1"),
    # one path for both health checks: /livez's 200 would hide readiness (a drain)
    ('[health]\nlivez = "/health"\nreadyz = "/health"\n',
     "3: health.readyz: /health is both health.livez and health.readyz"),
    ('[health]\nlog = true\nlivez = "/readyz"\n',
     "3: health.livez: /readyz is both health.livez and health.readyz"),
    ("backlog = 10\n",
     "1: backlog: backlog is a setting of [server]; put it under [server]"),
    ("max_body_bytes = 10\n[server]\nbacklog = 5\n",
     "1: max_body_bytes: max_body_bytes is a setting of [limits]; put it under [limits]"),
])
def test_array_table_and_top_level_errors_name_their_line(tmp_path: Path, nowhere: str,
                                                          text: str, expected: str) -> None:
    path = write(tmp_path, text)
    message = load_error("--config", str(path), default_path=nowhere)
    assert message.startswith(f"{path}:{expected}")


def test_wildcards_of_two_families_and_ports_apart_are_fine(tmp_path: Path,
                                                            nowhere: str) -> None:
    # [::] is IPv6-only (as nginx's default), so it and 0.0.0.0 share a port; a host name
    # is not resolved at check time
    path = write(tmp_path, '[server]\nlisten = ["[::]:8080", "0.0.0.0:8080", "127.0.0.1:8081",'
                           ' "localhost:8082", "127.0.0.1:0", "0.0.0.0:0"]\n')
    config = load_config(serve_args("--config", str(path)), {}, default_path=nowhere)
    assert len(config.server.listen) == 6


def test_listeners_from_the_environment_are_json(nowhere: str) -> None:
    env = {"REACTOR_SERVER_LISTENERS": '[{"address": "127.0.0.2:8080"}]'}
    config = load_config(serve_args(), env, default_path=nowhere)
    assert config.server.listeners == (ListenerOptions("127.0.0.2:8080"),)
    message = load_error(env={"REACTOR_SERVER_LISTENERS": "127.0.0.2:8080"},
                         default_path=nowhere)
    assert message.startswith("environment REACTOR_SERVER_LISTENERS: server.listeners: must be"
                              " JSON (a list of tables")


def test_static_tables_from_the_environment_are_json(tmp_path: Path, nowhere: str) -> None:
    env = {"REACTOR_STATIC_MIME_OVERRIDES": '{".log": "text/plain", "map": "application/json"}',
           "REACTOR_STATIC_MOUNTS": json.dumps([{"prefix": "/a", "root": str(tmp_path),
                                                 "listing": True}])}
    config = load_config(serve_args(), env, default_path=nowhere)
    assert dict(config.static.mime_overrides) == {".log": "text/plain",
                                                  ".map": "application/json"}
    assert [(m["prefix"], m["root"], m["listing"]) for m in config.static.mounts] == [
        ("/a", str(tmp_path), True)]
    message = load_error(env={"REACTOR_STATIC_MOUNTS": "/a=/srv"}, default_path=nowhere)
    assert message.startswith("environment REACTOR_STATIC_MOUNTS: static.mounts: must be JSON")
    message = load_error(env={"REACTOR_STATIC_MIME_OVERRIDES": '[".log"]'}, default_path=nowhere)
    assert "static.mime_overrides: must be a table" in message


# --- check-config opens what serve would open ------------------------------------------------


def test_check_config_fails_for_a_log_in_a_missing_directory(tmp_path: Path,
                                                              nowhere: str) -> None:
    target = tmp_path / "no-such-dir" / "access.log"
    path = write(tmp_path, f'[log]\naccess = "{target}"\n')
    assert check_config(["--config", str(path)], {}, nowhere) == (
        2, "", f"reactor: cannot open log file {target}: directory {target.parent} does not"
               " exist\n")
    assert not target.parent.exists()


def test_check_config_fails_for_an_unopenable_log(tmp_path: Path, nowhere: str) -> None:
    path = write(tmp_path, '[log]\nerror = "/proc/1/reactor-error.log"\n')
    code, out, err = check_config(["--config", str(path)], {}, nowhere)
    assert (code, out) == (2, "")
    assert err.startswith("reactor: cannot open log file /proc/1/reactor-error.log: ")
    assert err.count("\n") == 1


def test_check_config_leaves_no_log_file_behind(tmp_path: Path, nowhere: str) -> None:
    target = tmp_path / "access.log"
    path = write(tmp_path, f'[log]\naccess = "{target}"\n')
    assert check_config(["--config", str(path)], {}, nowhere)[0] == 0
    assert not target.exists()
    target.write_text("kept\n")
    assert check_config(["--config", str(path)], {}, nowhere)[0] == 0
    assert target.read_text() == "kept\n"


def test_check_config_fails_for_a_pidfile_in_a_missing_directory(tmp_path: Path,
                                                                  nowhere: str) -> None:
    pidfile = tmp_path / "run" / "reactor.pid"
    path = write(tmp_path, f'[daemon]\npidfile = "{pidfile}"\n')
    assert check_config(["--config", str(path)], {}, nowhere) == (
        2, "", f"reactor: cannot create pid file {pidfile}: directory {pidfile.parent} does"
               " not exist\n")


@pytest.mark.parametrize("kind", ["directory", "fifo", "dangling-symlink"])
@pytest.mark.parametrize("command", ["check-config", "serve"])
def test_a_pidfile_that_is_no_regular_file_is_refused_by_both(tmp_path: Path, kind: str,
                                                              command: str) -> None:
    """daemon.pidfile naming a directory passed check-config and serve exited 1 ("cannot
    read pid file"); naming a FIFO, serve blocked forever opening it to read a pid; a
    dangling symlink passed check-config and serve said the pid file "appeared while
    starting". Now both refuse it as the configuration error it is: one line, exit 2."""
    pidfile = tmp_path / "run"
    if kind == "directory":
        pidfile.mkdir()
    elif kind == "fifo":
        os.mkfifo(pidfile)
    else:
        pidfile.symlink_to(tmp_path / "gone" / "reactor.pid")
    path = write(tmp_path, f'[daemon]\npidfile = "{pidfile}"\n')
    result = subprocess.run(
        [sys.executable, "-m", "reactor", command, "--config", str(path)], cwd=tmp_path,
        env=server_env(REACTOR_SERVER_LISTEN="127.0.0.1:0", REACTOR_LOG_ACCESS="off"),
        capture_output=True, text=True, timeout=DEADLINE_S)
    what = {"directory": "a directory", "fifo": "not a regular file",
            "dangling-symlink": f"a dangling symlink to {tmp_path / 'gone' / 'reactor.pid'}"
            }[kind]
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"reactor: cannot use pid file {pidfile}: it is {what}\n"


@pytest.mark.parametrize(("app", "module_source"), [
    ({"native": "nosuch_check_c1:app"}, None),
    ({"native": "both_check_c2:app", "wsgi": "both_check_c2:app"}, "app = None\n"),
    ({"wsgi": "raises_check_c3:make()"},
     "def make():\n    raise RuntimeError('no database')\n"),
])
def test_check_config_refuses_the_app_serve_refuses(tmp_path: Path, app: dict[str, str],
                                                    module_source: str | None) -> None:
    """check-config imports the [app] as serve does (real processes, same working directory):
    the same one line, exit 2, never a traceback."""
    import subprocess
    import sys

    from tests.ops.serverproc import base_config, server_env, write_config
    if module_source is not None:
        name = next(iter(app.values())).split(":")[0]
        (tmp_path / f"{name}.py").write_text(module_source)
    config = write_config(tmp_path / "reactor.toml", base_config(tmp_path, app=app))
    results = [subprocess.run([sys.executable, "-m", "reactor", command, "--config", str(config)],
                              cwd=tmp_path, env=server_env(), capture_output=True, text=True,
                              timeout=30)
               for command in ("check-config", "serve")]
    (check, serve) = results
    assert serve.returncode == 2 and serve.stderr.startswith("reactor: "), serve.stderr
    assert (check.returncode, check.stdout, check.stderr) == (2, "", serve.stderr)
    assert check.stderr.count("\n") == 1 and "Traceback" not in check.stderr


def test_check_config_passes_an_app_that_imports(tmp_path: Path, nowhere: str) -> None:
    (tmp_path / "good_check_c4.py").write_text(
        "from reactor import App\napp = App()\n")
    path = write(tmp_path, f'[app]\nnative = "good_check_c4:app"\npath = ["{tmp_path}"]\n')
    assert check_config(["--config", str(path)], {}, nowhere) == (
        0, f"configuration file {path} test is successful\n", "")


def test_websocket_ping_interval_zero_loads_and_sends_no_pings(tmp_path: Path,
                                                               nowhere: str) -> None:
    """0 is the documented "no keep-alive pings": the file and the environment accept it, and
    a session on a server so configured gets no ping (with a ping timeout that would show one
    within the wait)."""
    from reactor.proto.websocket import Message
    from tests.conftest import start_server
    from tests.wsclient import WsClient
    path = write(tmp_path, "[websocket]\nping_interval_s = 0\nping_timeout_s = 0.1\n")
    config = load_config(serve_args("--config", str(path)), {}, default_path=nowhere)
    assert config.websocket.ping_interval_s == 0.0
    from_env = load_config(serve_args(), {"REACTOR_WEBSOCKET_PING_INTERVAL_S": "0"},
                           default_path=nowhere)
    assert from_env.websocket.ping_interval_s == 0.0
    running = start_server(tmp_path, websocket={
        "ping_interval_s": config.websocket.ping_interval_s,
        "ping_timeout_s": config.websocket.ping_timeout_s})
    try:
        with WsClient(running.host, running.port, "/ws/echo") as ws:
            with pytest.raises(TimeoutError):  # nothing at all comes: no ping
                ws.recv_event(timeout=0.5)
            ws.send("still here")
            event = ws.recv()
            assert isinstance(event, Message) and event.data == "still here"
            assert ws.pings == 0
    finally:
        running.stop()


def _toml_holding(text: str, type_name: str) -> str:
    """A TOML value of the shape `type_name` describes, holding the string `text`."""
    if type_name.startswith("list of") and type_name.split(",")[0].endswith("tables"):
        return f"[{{ root = {text} }}]"
    if type_name.startswith("list of"):
        return f"[{text}]"
    if type_name.startswith("table of"):
        return f'{{ ".log" = {text} }}'
    return text


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_a_nul_character_in_any_setting_is_one_line(tmp_path: Path, nowhere: str,
                                                   setting: Any) -> None:
    """TOML's "\\u0000" reached os.open, pwd, OpenSSL and realpath, which raise ValueError
    ("embedded null byte"): a traceback from check-config and serve (or a pid file path that
    passed check-config), not the setting's one line."""
    value = _toml_holding('"/srv/x\\u0000y"', setting.kind.type_name())
    path = write(tmp_path, f"[{setting.section}]\n{setting.key} = {value}\n")
    code, out, err = check_config(["--config", str(path)], {}, nowhere)
    assert (code, out) == (2, "")
    assert err == (f'reactor: {path}:2: {setting.name}: contains a NUL character ("\\u0000"),'
                   " which no path, name or value can hold\n")


def test_serve_refuses_a_nul_in_a_path_in_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[log]\naccess = "/var/log/reactor\\u0000/access.log"\n')
    result = subprocess.run(
        [sys.executable, "-m", "reactor", "serve", "--config", str(path), "--port", "0"],
        cwd=tmp_path, env=server_env(), capture_output=True, text=True, timeout=DEADLINE_S)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (f'reactor: {path}:2: log.access: contains a NUL character'
                             ' ("\\u0000"), which no path, name or value can hold\n')
