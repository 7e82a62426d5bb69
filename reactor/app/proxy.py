"""Trusted proxies: which peers may speak for a client, and the Forwarded/X-Forwarded-* walk.

Strategy
--------
A request's `client_addr` starts as the TCP peer (or what a trusted PROXY-protocol header
said). Only when that hop is in `[proxy] trusted` does `TrustedProxyApp` read the forwarding
headers, and then it walks their list from the right -- the entry the nearest proxy appended
-- taking each entry as the new client while the hop that appended it is trusted, and
stopping at the first untrusted hop (or an entry it cannot read). "Take the leftmost entry"
would let any client choose its own address by sending the header itself.

Only one header family is read (`[proxy] headers`: "x-forwarded" or "forwarded"): the one
the proxies set. Honouring the other would let a client inject a list the proxy never
cleaned. `scheme` and the Host come from the same entry the address came from.

The hops are produced lazily, nearest first, and the walk reads only the entries it gets to:
a client behind a trusted proxy controls everything left of the proxy's own entry (up to the
proxy's header limit, some 30 KB of `,,,` or `for=...` elements), and parsing every entry
of that up front cost the loop some 80 ms per request. For the same reason the walk believes
at most `MAX_HOPS` entries (a list of trusted addresses only is the client's own invention;
no real chain of proxies is that long).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from typing import Any

from reactor.app.types import Application, Dispatch, Headers, Request

HEADER_FAMILIES = ("x-forwarded", "forwarded")
MAX_HOPS = 32  # entries the walk believes at most
_CACHE_ENTRIES = 4096
_SCHEMES = {b"http": "http", b"https": "https"}
# A Host value: reg-name/IPv4/[IPv6] with an optional port; no spaces, commas or slashes.
_HOST_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~:[]")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _host_value(host: bytes) -> bool:
    """Whether a forwarded host reads as a Host field value (RFC 9110 7.2): a name or IPv4
    address with an optional ":port", or an IPv6 literal in brackets with one -- an
    unbracketed "::1" would reach the app as a Host the request parser refuses. The port may
    be empty (port = *DIGIT), as the parser allows; the host may not."""
    if not host or not _HOST_CHARS.issuperset(host):
        return False
    if host[:1] == b"[":
        literal, bracket, port = host[1:].partition(b"]")
        if not bracket or (port and (port[:1] != b":" or not _digits(port[1:]))):
            return False
        if literal[:1] in (b"v", b"V"):  # IPvFuture
            return b"." in literal and b"[" not in literal
        try:
            ipaddress.IPv6Address(literal.decode("ascii"))
        except ValueError:
            return False
        return True
    name, colon, port = host.partition(b":")
    return bool(name) and b"[" not in host and b"]" not in host and (
        not colon or _digits(port))


def _digits(port: bytes) -> bool:
    return not port or port.isdigit()


class TrustedNetworks:
    """A CIDR list with a membership test for textual addresses (cached: peers repeat)."""

    __slots__ = ("_cache", "networks")

    def __init__(self, cidrs: Iterable[str] = ()) -> None:
        self.networks: tuple[Network, ...] = tuple(
            _unmapped(ipaddress.ip_network(cidr.strip(), strict=False)) for cidr in cidrs)
        self._cache: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, str):
            return False
        cached = self._cache.get(address)
        if cached is None:
            cached = self._match(address)
            if len(self._cache) >= _CACHE_ENTRIES:
                self._cache.clear()
            self._cache[address] = cached
        return cached

    def _match(self, address: str) -> bool:
        ip = parse_ip(address)
        return ip is not None and any(ip in network for network in self.networks)


_V4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def _unmapped(network: Network) -> Network:
    """A v4-mapped network ("::ffff:10.0.0.0/104", or "::ffff:10.0.0.5" as a dual-stack
    socket's peer is logged) as the IPv4 network it covers: addresses are matched unmapped
    (`parse_ip`), so as written it could never match anything."""
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_V4_MAPPED):
        mapped = network.network_address.ipv4_mapped
        assert mapped is not None  # inside ::ffff:0:0/96
        return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address `text` names (an IPv4-mapped IPv6 address as IPv4), or None."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id is not None:
            return None
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
    return ip


def check_cidrs(cidrs: Iterable[str]) -> str | None:
    """The first entry that is not a network ("10.0.0.0/8", "::1"), as an error reason."""
    for cidr in cidrs:
        try:
            ipaddress.ip_network(cidr.strip(), strict=False)
        except ValueError:
            return f"not an address or network (CIDR): {cidr!r}"
    return None


# ---- header parsing ------------------------------------------------------------------------

Hop = tuple[str | None, str | None, bytes | None]
"""(client address or None if unreadable, scheme or None, host or None) of one list entry."""


def _node_address(node: bytes) -> str | None:
    """RFC 7239 6: node = nodename [":" node-port]; IPv6 in brackets. Addresses only; a
    v4-mapped one ("[::ffff:10.0.0.1]", from a dual-stack proxy) as its IPv4 address."""
    node = node.strip()
    if node.startswith(b"["):
        end = node.find(b"]")
        if end < 0 or (end + 1 < len(node) and node[end + 1:end + 2] != b":"):
            return None
        text = node[1:end].decode("latin-1")
        ip = parse_ip(text) if ":" in text else None  # "[10.0.0.1]" is no IPv6address
        return str(ip) if ip is not None else None
    host, _, _port = node.partition(b":")
    ip = parse_ip(host.decode("latin-1"))
    return str(ip) if isinstance(ip, ipaddress.IPv4Address) else None


def _plain_address(entry: bytes) -> str | None:
    """One X-Forwarded-For entry: a bare address (nginx, HAProxy, ALB), or IPv4:port,
    or [IPv6]:port."""
    entry = entry.strip()
    if entry.startswith(b"["):
        return _node_address(entry)
    ip = parse_ip(entry.decode("latin-1"))
    if ip is not None:
        return str(ip)
    return _node_address(entry) if entry.count(b":") == 1 else None


def _split_quoted(value: bytes, separator: int) -> list[bytes]:
    """`value` split at `separator` outside quoted strings. A quote left open (a client's
    `for="6.6.6.6`) cannot take in the rest of the field, where a proxy that appends to the
    client's line (or combines field lines, RFC 9110 5.3) wrote its own element: the part
    it opened in is split as if it had no quotes."""
    if 0x22 not in value:  # no quoted string: the same split, in C
        return value.split(bytes((separator,)))
    parts: list[bytes] = []
    start, quoted, escaped = 0, False, False
    for at, byte in enumerate(value):
        if escaped:
            escaped = False
        elif quoted and byte == 0x5C:  # backslash
            escaped = True
        elif byte == 0x22:  # double quote
            quoted = not quoted
        elif byte == separator and not quoted:
            parts.append(value[start:at])
            start = at + 1
    if quoted:
        parts.extend(value[start:].split(bytes((separator,))))
    else:
        parts.append(value[start:])
    return parts


def _unquote(value: bytes) -> bytes:
    value = value.strip()
    if len(value) >= 2 and value[:1] == b'"' and value[-1:] == b'"':
        value = value[1:-1].replace(b'\\"', b'"').replace(b"\\\\", b"\\")
    return value


def forwarded_hops(headers: Headers) -> Iterator[Hop]:
    """RFC 7239 `Forwarded` elements as (for, proto, host), right to left: each element is
    parsed only when the walk asks for it."""
    elements = [element for field in headers.get_all(b"forwarded")
                for element in _split_quoted(field, 0x2C)]  # ","
    for element in reversed(elements):
        if not element.strip():
            continue
        node: bytes | None = None
        scheme: str | None = None
        host: bytes | None = None
        for pair in _split_quoted(element, 0x3B):  # ";"
            name, eq, value = pair.partition(b"=")
            if not eq:
                continue
            name = name.strip().lower()
            value = _unquote(value)
            if name == b"for":
                node = value  # the last one counts: parsed once, below
            elif name == b"proto":
                scheme = _SCHEMES.get(value.lower())
            elif name == b"host":
                host = value
        yield _node_address(node) if node is not None else None, scheme, host


def _list(headers: Headers, name: bytes) -> list[bytes]:
    return [item for field in headers.get_all(name) for item in field.split(b",")]


def x_forwarded_hops(headers: Headers) -> Iterator[Hop]:
    """X-Forwarded-For entries, right to left (each parsed only when the walk asks for it),
    with X-Forwarded-Proto/-Host aligned to them from the right (a single -Proto/-Host value
    applies to the rightmost entry only when the lists differ in length: it was set by the
    nearest proxy)."""
    addresses = _list(headers, b"x-forwarded-for")
    protos = _list(headers, b"x-forwarded-proto")
    hosts = _list(headers, b"x-forwarded-host")
    if not addresses:
        if protos or hosts:
            # A proxy that says only the scheme/host (no address list): the peer is the client.
            proto = protos[-1].strip().lower() if protos else None
            yield None, _SCHEMES.get(proto) if proto else None, hosts[-1].strip() if hosts else None
        return
    for from_right in range(1, len(addresses) + 1):
        proto = protos[-from_right].strip().lower() if from_right <= len(protos) else None
        host = hosts[-from_right].strip() if from_right <= len(hosts) else None
        yield (_plain_address(addresses[-from_right]), _SCHEMES.get(proto) if proto else None,
               host)


def resolve(peer: str, hops: Iterable[Hop], trusted: TrustedNetworks
            ) -> tuple[str, str | None, bytes | None]:
    """(client address, scheme, host) after walking `hops`, nearest first, from `peer`.

    Each entry was appended by the hop to its right (the last one by `peer`); it is believed
    only while that hop is trusted. Stops at the first untrusted hop, or at an entry whose
    address is unreadable ("unknown", "_hidden", garbage), keeping the last believed hop;
    an entry it does not get to is not even taken from `hops`. Believes `MAX_HOPS` at most.
    """
    client, scheme, host = peer, None, None
    hops = iter(hops)
    for _ in range(MAX_HOPS):
        if client not in trusted:
            break
        hop = next(hops, None)
        if hop is None:
            break
        address, hop_scheme, hop_host = hop
        if hop_scheme is not None:
            scheme = hop_scheme
        if hop_host is not None:
            host = hop_host
        if address is None:
            break
        client = address
    return client, scheme, host


class TrustedProxyApp:
    """An `Application` wrapper: sets `client_addr`, `scheme` (and Host) from the forwarding
    headers when the request came through a trusted proxy; otherwise leaves them alone."""

    __slots__ = ("_names", "app", "family", "trusted")

    def __init__(self, app: Application, trusted: TrustedNetworks, *,
                 family: str = "x-forwarded") -> None:
        if family not in HEADER_FAMILIES:
            raise ValueError(f"proxy header family must be one of {HEADER_FAMILIES}")
        self.app = app
        self.trusted = trusted
        self.family = family
        self._names = (frozenset({b"forwarded"}) if family == "forwarded" else
                       frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"}))

    def __getattr__(self, name: str) -> Any:
        """What configures the served app (`server.http.app.router`) reaches the wrapped one."""
        return getattr(self.app, name)

    def open(self, request: Request) -> Dispatch:
        names = self._names
        for name, _value in request.headers._fields:  # most carry none: one short scan
            if name in names:
                if request.client_addr in self.trusted:
                    self.rewrite(request)
                break
        return self.app.open(request)

    def rewrite(self, request: Request) -> None:
        headers = request.headers
        hops = (forwarded_hops(headers) if self.family == "forwarded"
                else x_forwarded_hops(headers))
        client, scheme, host = resolve(request.client_addr, hops, self.trusted)
        request.client_addr = client
        if scheme is not None:
            request.scheme = scheme
        if host is not None and _host_value(host):
            request.headers = Headers([(name, host if name == b"host" else value)
                                       for name, value in headers])
