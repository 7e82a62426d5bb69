"""Setting value kinds: how a setting's values are checked, parsed from text and shown as TOML.

A kind checks a value as TOML gives it (`check`), turns environment/command-line text into
such a value (`from_text`, best effort: what it cannot convert it passes on as a string, so
`check` reports it), and renders a stored value back as TOML (`to_toml`). A failed check raises
`Invalid`, whose message is the one-line reason, e.g. `must be an integer >= 0, got "big"`.
Values are quoted TOML-style in messages, so a reason never spans lines.
"""

from __future__ import annotations

import grp
import ipaddress
import json
import math
import os
import pwd
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reactor.conn.listener import ListenerOptions


class Invalid(ValueError):
    """A value failed its kind's check; str() is the reason, one line.

    `item` locates the fault inside a list of tables (`[[static.mounts]]`): the table's index
    and the offending key, if one, so the loader can name that key's line in the file.
    """

    def __init__(self, reason: str, item: tuple[int, str | None] | None = None) -> None:
        super().__init__(reason)
        self.item = item


def json_value(text: str, what: str) -> object:
    """Environment text holding a JSON value (tables and lists of tables), or Invalid."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise Invalid(f"must be JSON ({what}), got {show(text)}: {exc}") from None


# --- TOML rendering, shared by error messages and the generated files ------------------------

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f",
            "\r": "\\r"}


def toml_string(text: str) -> str:
    """`text` as a TOML basic string (control characters escaped, so always one line)."""
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(value: object) -> str:
    """A stored value as a TOML literal: bool, int, float, str, Path, or a list/tuple of those."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return toml_string(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML rendering for {type(value).__name__}")


def show(value: object) -> str:
    """A value as an error message quotes it after "got": TOML-ish, one line, kept short."""
    if isinstance(value, dict):
        return "a table"
    try:
        text = toml_value(value)
    except TypeError:
        text = f"a {type(value).__name__}"  # TOML dates and times
    return text if len(text) <= 80 else text[:77] + "..."


# --- kinds ---------------------------------------------------------------------------------------


class Kind:
    """How one setting's values are checked, parsed from text and rendered as TOML."""

    def type_name(self) -> str:
        """The type as the settings table and conf/reactor.toml describe it."""
        raise NotImplementedError

    def check(self, value: object, base: Path) -> Any:
        """The stored value for `value` (relative paths resolve against `base`), or Invalid."""
        raise NotImplementedError

    def from_text(self, text: str) -> object:
        """Environment/command-line text as a TOML-like value for `check`."""
        return text

    def to_toml(self, value: Any) -> str | None:
        """The stored value as a TOML literal; None means unset."""
        return None if value is None else toml_value(value)


def _split_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


@dataclass(frozen=True)
class Int(Kind):
    """An integer in lo..hi (hi None = no upper bound)."""

    lo: int
    hi: int | None = None

    def type_name(self) -> str:
        return f"int >= {self.lo}" if self.hi is None else f"int {self.lo}..{self.hi}"

    def expects(self) -> str:
        if self.hi is None:
            return f"an integer >= {self.lo}"
        return f"an integer between {self.lo} and {self.hi}"

    def fits(self, value: object) -> bool:
        if not isinstance(value, int) or isinstance(value, bool):
            return False
        return self.lo <= value and (self.hi is None or value <= self.hi)

    def check(self, value: object, base: Path) -> int:
        if not (isinstance(value, int) and self.fits(value)):
            raise Invalid(f"must be {self.expects()}, got {show(value)}")
        return value

    def from_text(self, text: str) -> object:
        try:
            return int(text.strip())
        except ValueError:
            return text


@dataclass(frozen=True)
class Workers(Int):
    """A worker-process count, or "auto" for one per CPU (os.cpu_count())."""

    def type_name(self) -> str:
        return f'int {self.lo}..{self.hi} or "auto"'

    def check(self, value: object, base: Path) -> int:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return os.cpu_count() or 1
        if not (isinstance(value, int) and self.fits(value)):
            raise Invalid(f'must be {self.expects()} or "auto", got {show(value)}')
        return value


@dataclass(frozen=True)
class Seconds(Kind):
    """A duration in seconds, > 0 and finite; TOML integers are accepted, stored as floats."""

    def type_name(self) -> str:
        return "float seconds > 0"

    def check(self, value: object, base: Path) -> float:
        if (isinstance(value, bool) or not isinstance(value, int | float)
                or not math.isfinite(value) or value <= 0):
            raise Invalid(f"must be a number of seconds > 0, got {show(value)}")
        return float(value)

    def from_text(self, text: str) -> object:
        try:
            return float(text.strip())
        except ValueError:
            return text


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


@dataclass(frozen=True)
class Bool(Kind):
    """true or false; as text also yes/no, on/off, 1/0."""

    def type_name(self) -> str:
        return "bool"

    def check(self, value: object, base: Path) -> bool:
        if not isinstance(value, bool):
            raise Invalid(f"must be true or false, got {show(value)}")
        return value

    def from_text(self, text: str) -> object:
        word = text.strip().lower()
        return True if word in _TRUE else False if word in _FALSE else text


@dataclass(frozen=True)
class Choice(Kind):
    """One of a few lower-case words (matched case-insensitively)."""

    choices: tuple[str, ...]

    def type_name(self) -> str:
        return "one of " + ", ".join(self.choices)

    def check(self, value: object, base: Path) -> str:
        if isinstance(value, str) and value.strip().lower() in self.choices:
            return value.strip().lower()
        options = ", ".join(toml_string(c) for c in self.choices)
        raise Invalid(f"must be one of {options}, got {show(value)}")


def _check_str_list(value: object, what: str) -> list[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise Invalid(f"must be a list of {what} strings, got {show(value)}")
    return [str(v).strip() for v in value]


_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_HOSTNAME = re.compile(rf"{_LABEL}(\.{_LABEL})*\.?")
_NUMERIC = re.compile(r"[0-9.]+")


def host_error(host: str) -> str | None:
    """Why `host` (brackets removed) cannot be a listen host, or None if it can."""
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return f"bad IPv6 address {toml_string(host)}"
        return None
    if _NUMERIC.fullmatch(host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return f"bad IPv4 address {toml_string(host)}"
        return None
    return None if _HOSTNAME.fullmatch(host) else f"bad host name {toml_string(host)}"


def parse_listen(addr: str) -> tuple[str, int]:
    """Split a "HOST:PORT" listen address: "[::1]:80" -> ("::1", 80); ValueError says why not.

    HOST is an IPv4 address, a host name, or an IPv6 address in brackets; PORT is 0..65535
    (0 = any free port).
    """
    text = addr.strip()
    if text.startswith("[") and text[text.find("]") + 1:][:1] != ":":  # "[::1]", "[::1]80"
        raise ValueError(f'{toml_string(addr)}: an IPv6 host in brackets needs ":PORT" after'
                         ' the "]", as "[::1]:8080"')
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f'{toml_string(addr)} is not HOST:PORT (IPv6 as "[::1]:8080")')
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
    if ":" in host and not bracketed:
        raise ValueError(f'{toml_string(addr)}: put an IPv6 host in brackets, as "[::1]:8080"')
    if bracketed and ":" not in host:
        raise ValueError(f"{toml_string(addr)}: only IPv6 hosts go in brackets")
    error = host_error(host)
    if error:
        raise ValueError(f"{toml_string(addr)}: {error}")
    if not (port.isascii() and port.isdigit() and int(port) <= 65535):
        raise ValueError(f"{toml_string(addr)}: port must be 0..65535, got {toml_string(port)}")
    return host, int(port)


def format_listen(host: str, port: int) -> str:
    """The listen address for (host, port), bracketing IPv6 hosts: ("::1", 80) -> "[::1]:80"."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def unbindable(host: str) -> str | None:
    """Why a listener can never bind the (valid) IPv6 `host` -- the kernel refuses it with
    EINVAL -- or None. Said while checking the configuration, not as a start-up failure."""
    if ":" not in host:
        return None
    address = ipaddress.IPv6Address(host)
    if address.scope_id is not None:
        return (f"IPv6 zone {toml_string('%' + address.scope_id)} in a listen address"
                ' (not supported, as in nginx); listen on "[::]" or a global address')
    if address.is_link_local:
        return (f"{toml_string(host)} is link-local, which cannot be listened on without"
                ' a zone; listen on "[::]" or a global address')
    if address.ipv4_mapped is not None:
        return (f"{toml_string(host)} is an IPv4-mapped address (IPv6 listeners are"
                f' IPv6-only); listen on {toml_string(str(address.ipv4_mapped))} instead')
    return None


def canonical_listen(addr: str) -> str:
    """`addr` in the one spelling of its socket address: an IPv6 host compressed and in lower
    case, the port without leading zeros ("[2001:DB8:0::1]:080" -> "[2001:db8::1]:80"), so
    two spellings of one address compare equal (listed twice, kept over a reload) instead of
    failing to bind as "address already in use". ValueError as from `parse_listen`, or when
    no socket can bind the host (`unbindable`)."""
    host, port = parse_listen(addr)
    if ":" in host:
        error = unbindable(host)
        if error:
            raise ValueError(f"{toml_string(addr)}: {error}")
        host = str(ipaddress.IPv6Address(host))
    return format_listen(host, port)


WILDCARD_CLASH = ("cannot both be bound: a wildcard address takes its port on every address"
                  " of its family; list one of them")
_WILDCARDS = frozenset({"0.0.0.0", "::"})


def shares_port(a: str, b: str) -> bool:
    """Whether listen addresses `a` and `b` (canonical) cannot both be bound: the same
    address, or the wildcard of a family ("0.0.0.0", "[::]": IPv6-only here, as nginx's
    default) and another address of that family on the same port -- the kernel refuses the
    second bind ("address in use") although no other process holds the port. Host names
    are not resolved here: only IP literals are judged."""
    (host_a, port_a), (host_b, port_b) = parse_listen(a), parse_listen(b)
    if port_a != port_b or port_a == 0:
        return False
    if host_a == host_b:
        return True
    if host_a not in _WILDCARDS and host_b not in _WILDCARDS:
        return False
    try:
        return ipaddress.ip_address(host_a).version == ipaddress.ip_address(host_b).version
    except ValueError:  # a host name
        return False


@dataclass(frozen=True)
class Listen(Kind):
    """A list of distinct "HOST:PORT" addresses, non-empty unless `optional`; as text
    comma-separated."""

    optional: bool = False

    def type_name(self) -> str:
        return 'list of "HOST:PORT"' + (", may be empty" if self.optional else "")

    def check(self, value: object, base: Path) -> tuple[str, ...]:
        addrs = _check_str_list(value, '"HOST:PORT"')
        if not addrs and not self.optional:
            raise Invalid("must list at least one address")
        canonical: list[str] = []
        for addr in addrs:
            try:
                address = canonical_listen(addr)
            except ValueError as exc:
                raise Invalid(str(exc)) from None
            if address in canonical:
                first = addrs[canonical.index(address)]
                also = "" if first == addr else f" (as {toml_string(first)})"
                raise Invalid(f"{toml_string(addr)} is listed twice{also}")
            other = next((i for i, taken in enumerate(canonical) if shares_port(taken, address)),
                         None)
            if other is not None:
                raise Invalid(f"{toml_string(addrs[other])} and {toml_string(addr)} "
                              f"{WILDCARD_CLASH}")
            canonical.append(address)
        return tuple(canonical)

    def from_text(self, text: str) -> object:
        return _split_list(text)


LISTENER_KEYS = ("address", "proxy_protocol")
"""Keys of a [[server.listeners]] table (a TLS switch will join them)."""


@dataclass(frozen=True)
class ListenerTables(Kind):
    """[[server.listeners]] tables: `address` (required) and per-listener options."""

    def type_name(self) -> str:
        return "list of listener tables"

    def check(self, value: object, base: Path) -> tuple[ListenerOptions, ...]:
        if isinstance(value, tuple) and all(isinstance(v, ListenerOptions) for v in value):
            return value  # already checked (a default)
        if not isinstance(value, list | tuple) or not all(isinstance(v, dict) for v in value):
            raise Invalid(f"must be a list of tables ([[server.listeners]]), got {show(value)}")
        found: list[ListenerOptions] = []
        for index, table in enumerate(value):
            options = self._check_one(index, table)
            if any(o.address == options.address for o in found):
                raise Invalid(f"listener #{index + 1}: {toml_string(table['address'].strip())}"
                              " is listed twice", (index, "address"))
            found.append(options)
        return tuple(found)

    @staticmethod
    def _check_one(index: int, table: dict[str, Any]) -> ListenerOptions:
        where = f"listener #{index + 1}"
        for key in table:
            if key not in LISTENER_KEYS:
                raise Invalid(f"{where}: unknown key {key!r} (keys: {', '.join(LISTENER_KEYS)})",
                              (index, key))
        if "address" not in table:
            raise Invalid(f"{where}: needs an address", (index, None))
        address = table["address"]
        if not isinstance(address, str):
            raise Invalid(f"{where}: address must be a \"HOST:PORT\" string, got {show(address)}",
                          (index, "address"))
        try:
            address = canonical_listen(address)
        except ValueError as exc:
            raise Invalid(f"{where}: {exc}", (index, "address")) from None
        proxy_protocol = table.get("proxy_protocol", False)
        if not isinstance(proxy_protocol, bool):
            raise Invalid(f"{where}: proxy_protocol must be true or false, got"
                          f" {show(proxy_protocol)}", (index, "proxy_protocol"))
        return ListenerOptions(address=address, proxy_protocol=proxy_protocol)

    def from_text(self, text: str) -> object:
        return json_value(text, 'a list of tables like [{"address": "127.0.0.1:8080"}]')

    def to_toml(self, value: Any) -> str | None:
        return "[" + ", ".join(
            f"{{ address = {toml_string(o.address)}"
            + (", proxy_protocol = true" if o.proxy_protocol else "") + " }" for o in value) + "]"


_MEDIA_RANGE = re.compile(r"[a-z0-9!#$&^_.+-]+/([a-z0-9!#$&^_.+-]+|\*)", re.IGNORECASE)


@dataclass(frozen=True)
class MediaTypes(Kind):
    """A list of media types, "type/subtype" or "type/*"; as text comma-separated."""

    def type_name(self) -> str:
        return "list of media types"

    def check(self, value: object, base: Path) -> tuple[str, ...]:
        types = _check_str_list(value, '"type/subtype"')
        for media_type in types:
            if not _MEDIA_RANGE.fullmatch(media_type):
                raise Invalid(f'{toml_string(media_type)} is not "type/subtype" or "type/*"')
        return tuple(t.lower() for t in types)

    def from_text(self, text: str) -> object:
        return _split_list(text)


def _resolve(text: str, base: Path) -> Path:
    return Path(os.path.abspath(base / os.path.expanduser(text)))


def _shown_path(text: str, path: Path) -> str:
    """The path as written, plus where it resolved to when that differs."""
    return toml_string(text) + ("" if text == str(path) else f" ({path})")


@dataclass(frozen=True)
class OptionalPath(Kind):
    """A path or unset ("" = unset); relative paths resolve against the base directory."""

    directory: bool = False

    def type_name(self) -> str:
        return "path to a directory, or unset" if self.directory else "path, or unset"

    def check(self, value: object, base: Path) -> Path | None:
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise Invalid(f"must be a path string, got {show(value)}")
        path = _resolve(value, base)
        if self.directory and not path.exists():
            raise Invalid(f"directory {_shown_path(value, path)} does not exist")
        if self.directory and not path.is_dir():
            raise Invalid(f"{_shown_path(value, path)} is not a directory")
        return path


_LOG_STREAMS = {"-": "-", "stdout": "-", "stderr": "stderr", "off": "off"}


@dataclass(frozen=True)
class LogTarget(Kind):
    """"-" (stdout), "stderr", "off", or a log file path (stored absolute). Whether the file
    opens is found out when it does (or by `reactor check-config`): the directory must exist."""

    def type_name(self) -> str:
        return 'file path, "-" (stdout), "stderr" or "off"'

    def check(self, value: object, base: Path) -> str:
        if not isinstance(value, str) or not value.strip():
            raise Invalid(f'must be a file path, "-", "stderr" or "off", got {show(value)}')
        if value in _LOG_STREAMS:
            return _LOG_STREAMS[value]
        path = _resolve(value, base)
        if path.is_dir():
            raise Invalid(f"log file {_shown_path(value, path)} is a directory")
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            raise Invalid(f"log file {_shown_path(value, path)}: {blocker} is not a directory")
        return str(path)


MAX_ID = 2**32 - 2
"""The largest user or group id: 32-bit ids, the all-ones one reserved."""


@dataclass(frozen=True)
class Account(Kind):
    """A user (or group) name that exists on this host, a numeric id, or unset ("")."""

    group: bool = False

    def type_name(self) -> str:
        return ("group" if self.group else "user") + " name or id, or unset"

    def check(self, value: object, base: Path) -> str | None:
        if value is None or value == "":
            return None
        what = "group" if self.group else "user"
        if not isinstance(value, str):
            raise Invalid(f"must be a {what} name string, got {show(value)}")
        if value.isascii() and value.isdigit():
            if int(value) > MAX_ID:  # uid_t/gid_t; (uid_t)-1 means "unchanged" to setuid()
                raise Invalid(f"must be a {what} id 0..{MAX_ID}, got {toml_string(value)}")
            return value
        try:
            if self.group:
                grp.getgrnam(value)
            else:
                pwd.getpwnam(value)
        except KeyError:
            raise Invalid(f"unknown {what} {toml_string(value)}") from None
        return value


_OCTAL = re.compile(r"(0o)?([0-7]{1,4})", re.IGNORECASE)


@dataclass(frozen=True)
class Umask(Kind):
    """A file mode mask written as an octal string ("022" or "0o022"), stored as an int."""

    def type_name(self) -> str:
        return 'octal string "000".."777"'

    def check(self, value: object, base: Path) -> int:
        match = _OCTAL.fullmatch(value.strip()) if isinstance(value, str) else None
        if match is None or int(match.group(2), 8) > 0o777:
            raise Invalid(f'must be an octal string like "022" or "0o022", got {show(value)}')
        return int(match.group(2), 8)

    def to_toml(self, value: Any) -> str | None:
        return toml_string(f"{value:03o}")
