"""Trusted proxies: Forwarded / X-Forwarded-* honoured only from trusted hops, walked from the
right; spoofing attempts from trusted and untrusted peers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reactor.app.proxy import TrustedNetworks, TrustedProxyApp
from reactor.app.types import FunctionApp, Headers, Request, Response
from tests.conftest import RawClient, RunningServer, request_bytes, start_server, wait_for_log

MAX_HOPS = 32  # the README says so
TRUSTED = TrustedNetworks(["10.0.0.0/8", "127.0.0.1", "2001:db8:aa::/48"])


def served(headers: dict[str, str], *, peer: str = "10.0.0.2", family: str = "x-forwarded",
           trusted: TrustedNetworks = TRUSTED) -> Request:
    """The request as the app behind TrustedProxyApp sees it."""
    fields = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    fields.insert(0, (b"host", b"origin.example"))
    request = Request("GET", "/", "", "HTTP/1.1", Headers(fields), remote_addr=peer)
    seen: list[Request] = []

    def app(req: Request) -> Response:
        seen.append(req)
        return Response(200)

    TrustedProxyApp(FunctionApp(app), trusted, family=family).open(request).respond()
    return seen[0]


@pytest.mark.parametrize(("peer", "xff", "client"), [
    # the nearest proxy is trusted: its entry is believed
    ("10.0.0.2", "203.0.113.9", "203.0.113.9"),
    # a client prepends a spoofed address: the walk stops at the first untrusted hop
    ("10.0.0.2", "6.6.6.6, 203.0.113.9", "203.0.113.9"),
    ("10.0.0.2", "6.6.6.6, 203.0.113.9, 10.1.2.3", "203.0.113.9"),
    # a chain of trusted proxies is walked through
    ("10.0.0.2", "203.0.113.9, 10.9.9.9, 10.1.2.3", "203.0.113.9"),
    # an untrusted peer's header is ignored entirely
    ("192.0.2.50", "203.0.113.9", "192.0.2.50"),
    ("192.0.2.50", "10.0.0.7", "192.0.2.50"),
    # unreadable entries stop the walk at the last believed hop
    ("10.0.0.2", "203.0.113.9, unknown", "10.0.0.2"),
    ("10.0.0.2", "203.0.113.9, 10.0.0.5, garbage", "10.0.0.2"),
    ("10.0.0.2", "", "10.0.0.2"),
    # ports and IPv6 forms proxies write
    ("10.0.0.2", "203.0.113.9:5555", "203.0.113.9"),
    ("10.0.0.2", "[2001:db8::7]:443", "2001:db8::7"),
    ("10.0.0.2", "[::ffff:203.0.113.9]:443", "203.0.113.9"),  # a dual-stack proxy's client
    ("10.0.0.2", "[203.0.113.9]:443", "10.0.0.2"),  # IPv4 goes without brackets
    ("10.0.0.2", "2001:db8::7", "2001:db8::7"),
    ("::ffff:10.0.0.2", "203.0.113.9", "203.0.113.9"),
    ("2001:db8:aa::1", "203.0.113.9", "203.0.113.9"),
    # everything trusted: the leftmost believed entry, not further
    ("10.0.0.2", "10.0.0.9, 10.0.0.8", "10.0.0.9"),
])
def test_x_forwarded_for_walk(peer: str, xff: str, client: str) -> None:
    assert served({"X-Forwarded-For": xff}, peer=peer).client_addr == client


def test_several_x_forwarded_for_fields_are_one_list() -> None:
    fields = [(b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-for", b"203.0.113.9")]
    request = Request("GET", "/", "", "HTTP/1.1", Headers(fields), remote_addr="10.0.0.2")
    TrustedProxyApp(FunctionApp(lambda r: Response(200)), TRUSTED).open(request)
    assert request.client_addr == "203.0.113.9"


def test_proto_and_host_from_a_trusted_proxy() -> None:
    request = served({"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https",
                      "X-Forwarded-Host": "shop.example"})
    assert (request.client_addr, request.scheme) == ("203.0.113.9", "https")
    assert request.headers.get(b"host") == b"shop.example"


def test_proto_and_host_from_an_untrusted_peer_are_ignored() -> None:
    request = served({"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https",
                      "X-Forwarded-Host": "evil.example"}, peer="192.0.2.50")
    assert (request.client_addr, request.scheme) == ("192.0.2.50", "http")
    assert request.headers.get(b"host") == b"origin.example"


@pytest.mark.parametrize(("proto", "host"), [("gopher", "ok.example"),
                                             ("https", "bad host/../x")])
def test_invalid_proto_or_host_values_are_ignored(proto: str, host: str) -> None:
    request = served({"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": proto,
                      "X-Forwarded-Host": host})
    assert request.scheme == ("https" if proto == "https" else "http")
    expected = host.encode() if " " not in host else b"origin.example"
    assert request.headers.get(b"host") == expected


@pytest.mark.parametrize(("host", "believed"), [
    ("[::1]:8080", True), ("[2001:db8::1]", True), ("shop.example:8443", True),
    ("203.0.113.9:80", True), ("[v1.fe]", True), ("shop.example:", True), ("[::1]:", True),
    # not a Host value: an unbracketed IPv6 address, a stray bracket, a second colon, a
    # bracketed IPv4 address or nonsense, a non-numeric port, no host
    ("::1", False), ("::1:8080", False), ("[::1", False), ("[::1]x", False),
    ("a.example:80:80", False), ("[10.0.0.1]", False),
    ("[zz]", False), ("shop.example:http", False),
    ("a]b.example", False), (":8080", False)])
def test_a_forwarded_host_must_read_as_a_host_value(host: str, believed: bool) -> None:
    request = served({"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Host": host})
    assert request.headers.get(b"host") == (host.encode() if believed else b"origin.example")


def test_proto_aligns_with_the_hop_the_address_came_from() -> None:
    # the outer (untrusted) hop claims https; the trusted proxy's own entry says http
    request = served({"X-Forwarded-For": "6.6.6.6, 203.0.113.9",
                      "X-Forwarded-Proto": "https, http"})
    assert (request.client_addr, request.scheme) == ("203.0.113.9", "http")


@pytest.mark.parametrize(("forwarded", "client", "scheme"), [
    ('for=203.0.113.9;proto=https', "203.0.113.9", "https"),
    ('for=6.6.6.6, for=203.0.113.9;proto=https', "203.0.113.9", "https"),
    ('for="[2001:db8::7]:4711";proto=http', "2001:db8::7", "http"),
    ('for=203.0.113.9:80', "203.0.113.9", "http"),
    ('For="203.0.113.9";Proto=HTTPS', "203.0.113.9", "https"),
    ('for=203.0.113.9, for=10.0.0.5;proto=https', "203.0.113.9", "https"),
    ('for=unknown;proto=https', "10.0.0.2", "https"),
    ('for=_hidden', "10.0.0.2", "http"),
    ('for="[::1]x"', "10.0.0.2", "http"),
    ('for="[::ffff:203.0.113.9]:4711";proto=https', "203.0.113.9", "https"),
    ('for="[203.0.113.9]"', "10.0.0.2", "http"),
    ('by=10.0.0.2;host="a.example";for=203.0.113.9', "203.0.113.9", "http"),
    # a client's quote left open does not swallow what its proxy appended to the line
    ('for="6.6.6.6, for=203.0.113.9;proto=https', "203.0.113.9", "https"),
    ('for=6.6.6.6;host="x, for=203.0.113.9;proto=https', "203.0.113.9", "https"),
    ('for="6.6.6.6, for="[2001:db8::7]:4711";proto=https', "2001:db8::7", "https"),
])
def test_forwarded_walk(forwarded: str, client: str, scheme: str) -> None:
    request = served({"Forwarded": forwarded}, family="forwarded")
    assert (request.client_addr, request.scheme) == (client, scheme)


def parses_counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The texts the walk parses as addresses from now on (`parse_ip` still does the work)."""
    import reactor.app.proxy as proxy

    parsed: list[str] = []
    real_parse_ip = proxy.parse_ip

    def counting_parse_ip(text: str) -> object:
        parsed.append(text)
        return real_parse_ip(text)

    monkeypatch.setattr(proxy, "parse_ip", counting_parse_ip)
    return parsed


@pytest.mark.parametrize(("family", "name", "padding", "nearest"), [
    ("x-forwarded", "X-Forwarded-For", ",", "203.0.113.9"),
    ("x-forwarded", "X-Forwarded-For", "6.6.6.6,", "203.0.113.9"),
    ("forwarded", "Forwarded", ",", "for=203.0.113.9"),
    ("forwarded", "Forwarded", "for=6.6.6.6;proto=https,", "for=203.0.113.9"),
])
def test_the_walk_reads_only_the_entries_it_believes(
        monkeypatch: pytest.MonkeyPatch, family: str, name: str, padding: str,
        nearest: str) -> None:
    # A client behind a trusted proxy sends ~30 KB of list elements; the proxy appends its
    # own entry. Only that entry and the one the walk stops at are worth parsing: parsing
    # all 30,000 cost the event loop ~80 ms of CPU per request.
    parsed = parses_counted(monkeypatch)
    value = padding * (30000 // len(padding)) + nearest
    assert served({name: value}, family=family).client_addr == "203.0.113.9"
    assert len(parsed) <= 4


def test_a_chain_of_trusted_entries_is_believed_up_to_max_hops(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Distinct trusted addresses defeat any cache: each costs an address parse (~10 us for
    # IPv6). A real chain is a few proxies; the walk stops believing after MAX_HOPS.
    parsed = parses_counted(monkeypatch)
    chain = [f"10.0.{n // 250}.{n % 250 + 1}" for n in range(3000)]
    request = served({"X-Forwarded-For": ", ".join(chain)})
    assert request.client_addr == chain[-MAX_HOPS]
    assert len(parsed) <= 2 * MAX_HOPS + 2
    assert served({"X-Forwarded-For": ", ".join(chain[-MAX_HOPS:])}
                  ).client_addr == chain[-MAX_HOPS]


def test_only_the_configured_header_family_counts() -> None:
    # proxies that set X-Forwarded-For pass a client's own Forwarded header through
    assert served({"Forwarded": "for=6.6.6.6", "X-Forwarded-For": "203.0.113.9"}
                  ).client_addr == "203.0.113.9"
    assert served({"Forwarded": "for=203.0.113.9", "X-Forwarded-For": "6.6.6.6"},
                  family="forwarded").client_addr == "203.0.113.9"


def test_trusted_networks() -> None:
    assert "10.255.0.1" in TRUSTED and "127.0.0.1" in TRUSTED
    assert "127.0.0.2" not in TRUSTED and "not an ip" not in TRUSTED and "" not in TRUSTED
    assert "::ffff:127.0.0.1" in TRUSTED and "2001:db8:aa:1::9" in TRUSTED
    assert not TrustedNetworks() and "10.0.0.1" not in TrustedNetworks()
    with pytest.raises(ValueError):
        TrustedNetworks(["10.0.0.0/33"])


# ---- through a real server ------------------------------------------------------------------

def who(request: Request) -> Response:
    return Response(200, [(b"Content-Type", b"text/plain")],
                    f"{request.client_addr} {request.scheme}".encode())


def serve(tmp_path: Path, **proxy: object) -> RunningServer:
    running = start_server(tmp_path, proxy=proxy)
    running.server.app.router.get("/who", who)
    return running


@pytest.fixture
def trusting(tmp_path: Path) -> Iterator[RunningServer]:
    running = serve(tmp_path)  # the default: loopback is trusted
    yield running
    running.stop()


def ask(running: RunningServer, headers: dict[str, str]) -> bytes:
    with RawClient.to(running) as client:
        client.send(request_bytes("GET", "/who", headers))
        return client.read_response().body


def test_spoofing_through_a_trusted_peer(trusting: RunningServer) -> None:
    assert ask(trusting, {"X-Forwarded-For": "6.6.6.6, 203.0.113.9",
                          "X-Forwarded-Proto": "https"}) == b"203.0.113.9 https"
    lines = wait_for_log(trusting.access_log, lambda x: x.get("event") == "request")
    assert (lines[0]["client_addr"], lines[0]["peer_addr"]) == ("203.0.113.9", "127.0.0.1")


def test_a_huge_forwarding_list_from_a_trusted_peer(trusting: RunningServer) -> None:
    assert ask(trusting, {"X-Forwarded-For": "," * 30000 + "203.0.113.9",
                          "X-Forwarded-Proto": "https"}) == b"203.0.113.9 https"


def test_a_dual_stack_proxys_v4_mapped_client_is_believed(tmp_path: Path) -> None:
    # A proxy listening on [::] sees an IPv4 client as ::ffff:a.b.c.d and writes it so,
    # bracketed as RFC 7239 6 has every IPv6 node; it is the client, not an unreadable entry.
    running = serve(tmp_path, headers="forwarded")
    try:
        assert ask(running, {"Forwarded": 'for="[::ffff:203.0.113.9]:4711";proto=https'}
                   ) == b"203.0.113.9 https"
        line = wait_for_log(running.access_log, lambda x: x.get("event") == "request")[0]
        assert (line["client_addr"], line["peer_addr"]) == ("203.0.113.9", "127.0.0.1")
    finally:
        running.stop()


def test_a_trusted_proxy_written_v4_mapped_is_trusted(tmp_path: Path) -> None:
    # "::ffff:127.0.0.1" is how a dual-stack socket's IPv4 peer shows in the access log
    # (socket activation of "[::]:80"); copied into proxy.trusted it names that proxy.
    running = serve(tmp_path, trusted=["::ffff:127.0.0.1", "::ffff:10.0.0.0/104"])
    try:
        assert ask(running, {"X-Forwarded-For": "203.0.113.9, 10.1.2.3"}) == b"203.0.113.9 http"
    finally:
        running.stop()
    networks = TrustedNetworks(["::ffff:10.0.0.0/104", "::ffff:0:0/96", "::/0"]).networks
    assert [str(n) for n in networks] == ["10.0.0.0/8", "0.0.0.0/0", "::/0"]


def test_spoofing_from_an_untrusted_peer(tmp_path: Path) -> None:
    running = serve(tmp_path, trusted=["10.0.0.0/8"])
    try:
        assert ask(running, {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https",
                             "Forwarded": "for=203.0.113.9;proto=https"}) == b"127.0.0.1 http"
        line = wait_for_log(running.access_log, lambda x: x.get("event") == "request")[0]
        assert line["client_addr"] == line["peer_addr"] == "127.0.0.1"
    finally:
        running.stop()


def test_headers_off(tmp_path: Path) -> None:
    running = serve(tmp_path, headers="off")
    try:
        assert ask(running, {"X-Forwarded-For": "203.0.113.9"}) == b"127.0.0.1 http"
    finally:
        running.stop()


def test_proxy_protocol_source_is_the_hop_the_walk_starts_from(tmp_path: Path) -> None:
    # LB (trusted, PROXY protocol) <- an untrusted client that sent its own X-Forwarded-For
    running = start_server(tmp_path, proxy={"protocol": True})
    running.server.app.router.get("/who", who)
    try:
        with RawClient.to(running) as client:
            client.send(b"PROXY TCP4 203.0.113.7 10.0.0.1 5000 80\r\n"
                        + request_bytes("GET", "/who", {"X-Forwarded-For": "6.6.6.6"}))
            assert client.read_response().body == b"203.0.113.7 http"
    finally:
        running.stop()
