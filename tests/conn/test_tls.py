"""HTTPS terminated in the loop: every route, keep-alive, pipelining, large files, the
handshake (trickled, never sent, refused), plain HTTP on the TLS port, SNI, client
certificates, curl. Certificates are made in the test (trustme); nothing is committed."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import ssl
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from reactor.conn.tls import client_hello_alpn, https_url, name_matches
from tests.conftest import (
    RawClient,
    RunningServer,
    fetch,
    on_loop,
    read_log,
    request_bytes,
    wait_for_log,
    wait_until,
)
from tests.conn.tlskit import (
    Certs,
    https,
    peer_names,
    tls_client,
    tls_port,
    tls_server,
    trickled_handshake,
)


@pytest.fixture
def server(tmp_path: Path, certs: Certs, files_dir: Path) -> Iterator[RunningServer]:
    running = tls_server(tmp_path, certs, files={"directory": files_dir},
                         timeouts={"tls_handshake_s": 1.0})
    yield running
    running.stop()


def requests_logged(running: RunningServer) -> list[dict]:
    return [line for line in read_log(running.access_log) if line["event"] == "request"]


def handshake_failures(running: RunningServer, count: int = 1) -> list[dict]:
    return wait_for_log(running.access_log,
                        lambda line: line["event"] == "tls-handshake-failed", count)


# ---- routes, keep-alive, pipelining, files --------------------------------------------------


def test_every_original_route_answers_over_tls(server: RunningServer, certs: Certs,
                                               files_dir: Path) -> None:
    context = certs.client_context()
    assert https(server, context, "GET", "/")[0] == 200
    assert https(server, context, "GET", "/echo/x")[2] == b"x"
    status, _, body = https(server, context, "GET", "/user-agent",
                            headers={"User-Agent": "tls-test/1"})
    assert (status, body) == (200, b"tls-test/1")
    assert https(server, context, "POST", "/files/up.txt", body=b"over tls")[0] == 201
    assert (files_dir / "up.txt").read_bytes() == b"over tls"
    assert https(server, context, "GET", "/files/up.txt")[2] == b"over tls"
    assert https(server, context, "GET", "/files/missing")[0] == 404


def test_access_log_says_scheme_and_tls_facts(server: RunningServer, certs: Certs) -> None:
    https(server, certs.client_context(), "GET", "/echo/tls")
    fetch(server, "GET", "/echo/plain")
    lines = wait_for_log(server.access_log, lambda line: line["event"] == "request", 2)
    by_path = {line["path"]: line for line in lines}
    secure, plain = by_path["/echo/tls"], by_path["/echo/plain"]
    assert secure["scheme"] == "https" and plain["scheme"] == "http"
    assert secure["tls_version"] in ("TLSv1.2", "TLSv1.3")
    assert secure["tls_cipher"] and secure["sni"] == "localhost"
    assert "tls_version" not in plain and "tls_client_subject" not in secure


def test_keep_alive_and_ten_deep_pipelining_over_tls(server: RunningServer,
                                                     certs: Certs) -> None:
    with tls_client(server, certs.client_context()) as client:
        client.send(request_bytes("GET", "/echo/first"))
        assert client.read_response().body == b"first"
        client.send(b"".join(request_bytes("GET", f"/echo/{n}") for n in range(10)))
        bodies = [client.read_response().body for _ in range(10)]
        assert bodies == [str(n).encode() for n in range(10)]
        client.send(request_bytes("GET", "/echo/last"))
        assert client.read_response().body == b"last"
    lines = wait_for_log(server.access_log, lambda line: line["event"] == "request", 12)
    assert len({line["conn_id"] for line in lines}) == 1


def test_a_50_mb_download_arrives_byte_for_byte(server: RunningServer, certs: Certs,
                                                files_dir: Path) -> None:
    data = os.urandom(1 << 20) * 50
    (files_dir / "big.bin").write_bytes(data)
    with tls_client(server, certs.client_context()) as client:
        client.send(request_bytes("GET", "/files/big.bin"))
        response = client.read_response(head=True)
        assert response.status == 200
        assert response.header("content-length") == str(len(data))
        digest, left = hashlib.sha256(client.buffer), len(data) - len(client.buffer)
        client.buffer = b""
        while left:
            chunk = client.sock.recv(min(left, 1 << 20))
            assert chunk, f"closed with {left} bytes to go"
            digest.update(chunk)
            left -= len(chunk)
        assert digest.digest() == hashlib.sha256(data).digest()
        client.send(request_bytes("GET", "/echo/after"))  # the connection is still in step
        assert client.read_response().body == b"after"


def test_a_range_and_a_multipart_range_from_a_document_root(tmp_path: Path, certs: Certs,
                                                            files_dir: Path) -> None:
    data = bytes(range(256)) * 4096
    (files_dir / "r.bin").write_bytes(data)
    running = tls_server(tmp_path, certs, static={"root": files_dir})
    try:
        with tls_client(running, certs.client_context()) as client:
            client.send(request_bytes("GET", "/r.bin", {"Range": "bytes=1000-400999"}))
            response = client.read_response()
            assert response.status == 206 and response.body == data[1000:401000]
            client.send(request_bytes("GET", "/r.bin", {"Range": "bytes=0-9,300000-300099"}))
            response = client.read_response()
            assert response.status == 206
            assert data[:10] in response.body and data[300000:300100] in response.body
            client.send(request_bytes("GET", "/r.bin"))
            assert client.read_response().body == data
    finally:
        running.stop()


def test_an_upload_larger_than_a_record_arrives_whole(server: RunningServer, certs: Certs,
                                                      files_dir: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 7)
    status, _, _ = https(server, certs.client_context(), "POST", "/files/up.bin", body=data)
    assert status == 201
    assert (files_dir / "up.bin").read_bytes() == data


# ---- the handshake ---------------------------------------------------------------------------


def test_a_handshake_trickled_byte_by_byte_completes(server: RunningServer,
                                                     certs: Certs) -> None:
    answer = trickled_handshake(tls_port(server), certs.client_context(),
                                request_bytes("GET", "/echo/slow", {"Connection": "close"}))
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"\r\n\r\nslow")


def test_a_client_that_never_handshakes_is_closed_after_the_timeout(
        server: RunningServer) -> None:
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    before = open_fds()
    sock = socket.create_connection(("127.0.0.1", tls_port(server)), timeout=10)
    try:
        assert sock.recv(100) == b""  # closed by the server: tls_handshake_s is 1 s here
    finally:
        sock.close()
    line = handshake_failures(server)[0]
    assert line["reason"] == "handshake-timeout" and line["remote_addr"] == "127.0.0.1"
    assert wait_until(lambda: on_loop(server, lambda: len(server.server.http.connections)) == 0)
    assert wait_until(lambda: open_fds() <= before)


def test_a_handshake_failure_is_one_line_and_no_traceback(server: RunningServer,
                                                          tmp_path: Path) -> None:
    stranger = Certs(tmp_path / "other-ca", "other")  # the client trusts another CA
    with pytest.raises(ssl.SSLError):
        https(server, stranger.client_context(), "GET", "/echo/x")
    line = handshake_failures(server)[0]
    assert line["reason"] in ("tlsv1_alert_unknown_ca", "sslv3_alert_bad_certificate")
    assert "Traceback" not in server.error_log.read_text()


def test_plain_http_to_the_tls_port_gets_a_readable_400_naming_the_https_url(
        server: RunningServer) -> None:
    port = tls_port(server)
    with RawClient("127.0.0.1", port) as client:
        client.send(request_bytes("GET", "/echo/x?a=1", {"Host": f"localhost:{port}"}))
        response = client.read_response()
        assert response.status == 400
        assert (response.header("content-type") or "").startswith("text/plain")
        assert f"https://localhost:{port}/echo/x?a=1".encode() in response.body
        assert client.is_closed_by_peer()
    line = wait_for_log(server.access_log,
                        lambda line: line.get("reason") == "plain-http-to-tls-port")[0]
    assert line["status"] == 400


def test_a_client_offering_only_h2_is_refused_with_the_alpn_alert(server: RunningServer,
                                                                   certs: Certs) -> None:
    with pytest.raises(ssl.SSLError, match=r"NO_APPLICATION_PROTOCOL|no application protocol"):
        https(server, certs.client_context(alpn=["h2"]), "GET", "/")
    assert handshake_failures(server)[0]["alpn_offered"] == ["h2"]
    status, _, _ = https(server, certs.client_context(alpn=["h2", "http/1.1"]), "GET", "/")
    assert status == 200


def test_a_server_name_that_is_not_ascii_gets_unrecognized_name_not_a_traceback(
        server: RunningServer, certs: Certs) -> None:
    """`openssl s_client -servername café.example` sends the name's raw UTF-8. The `ssl`
    module could not decode it for the SNI callback: an "Exception ignored" traceback on
    stderr (an unraisable exception, an error here) and the internal_error alert."""
    outgoing = ssl.MemoryBIO()
    client = certs.client_context().wrap_bio(ssl.MemoryBIO(), outgoing,
                                             server_hostname="cafxx.example")
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    hello = outgoing.read().replace(b"cafxx", "café".encode())  # the same length
    with RawClient("127.0.0.1", tls_port(server)) as raw:
        raw.send(hello)
        alert = raw.sock.recv(64)
    assert alert == b"\x15\x03\x03\x00\x02\x02\x70"  # fatal unrecognized_name
    line = handshake_failures(server)[0]
    assert (line["reason"], line["sni"]) == ("unrecognized_name", "café.example")
    status, _, _ = https(server, certs.client_context(), "GET", "/")  # an A-label is fine
    assert status == 200


def _client_hello(certs: Certs, name: str, alpn: list[str] | None = None) -> bytes:
    outgoing = ssl.MemoryBIO()
    context = certs.client_context(alpn=alpn) if alpn else certs.client_context()
    client = context.wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname=name)
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    return outgoing.read()


@pytest.mark.parametrize("cuts", [(1,), (3,), (5,), (5, 40), (60,)])
@pytest.mark.parametrize("kind", ["sni", "alpn"])
def test_a_client_hello_split_into_segments_is_checked_whole(
        server: RunningServer, certs: Certs, kind: str, cuts: tuple[int, ...]) -> None:
    """The ClientHello checks (non-ASCII server name, ALPN without HTTP/1.x) looked only at a
    first segment that held the whole record: sent in pieces, the name reached `ssl` (an
    "Exception ignored" traceback on stderr and the internal_error alert) and an h2-only
    offer a handshake without ALPN."""
    if kind == "sni":
        hello = _client_hello(certs, "cafxx.example").replace(b"cafxx", "café".encode())
        alert = b"\x15\x03\x03\x00\x02\x02\x70"  # fatal unrecognized_name
    else:
        hello = _client_hello(certs, "localhost", alpn=["h2"])
        alert = b"\x15\x03\x03\x00\x02\x02\x78"  # fatal no_application_protocol
    with RawClient("127.0.0.1", tls_port(server)) as raw:
        raw.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        at = 0
        for cut in cuts:  # each piece its own segment, read by the server on its own
            raw.send(hello[at:cut])
            at = cut
            time.sleep(0.1)
        raw.send(hello[at:])
        assert raw.sock.recv(64) == alert
    line = handshake_failures(server)[0]
    assert line["reason"] == ("unrecognized_name" if kind == "sni" else
                              "no_application_protocol")
    status, _, _ = https(server, certs.client_context(), "GET", "/")
    assert status == 200


@pytest.mark.parametrize("cuts", [(), (7,), (60, 130)])
def test_a_client_hello_fragmented_over_records_is_checked_whole(
        server: RunningServer, certs: Certs, cuts: tuple[int, ...]) -> None:
    """A ClientHello may span several TLS records (RFC 8446 5.1); `ssl` reassembles it, so a
    non-ASCII server name in the second record reached it and printed a traceback."""
    record = _client_hello(certs, "cafxx.example").replace(b"cafxx", "café".encode())
    message = record[5:]
    hello = b"".join(record[:3] + len(piece).to_bytes(2, "big") + piece
                     for piece in (message[:50], message[50:120], message[120:]))
    with RawClient("127.0.0.1", tls_port(server)) as raw:
        raw.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        at = 0
        for cut in cuts:
            raw.send(hello[at:cut])
            at = cut
            time.sleep(0.1)
        raw.send(hello[at:])
        assert raw.sock.recv(64) == b"\x15\x03\x03\x00\x02\x02\x70"  # unrecognized_name
    line = handshake_failures(server)[0]
    assert (line["reason"], line["sni"]) == ("unrecognized_name", "café.example")
    # and a real client's hello in records of 100 bytes is served
    outgoing, incoming = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = certs.client_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    record = outgoing.read()
    message = record[5:]
    with RawClient("127.0.0.1", tls_port(server)) as raw:
        raw.send(b"".join(record[:3] + len(message[at:at + 100]).to_bytes(2, "big")
                          + message[at:at + 100] for at in range(0, len(message), 100)))
        while True:
            incoming.write(raw.sock.recv(65536))
            try:
                client.do_handshake()
                break
            except ssl.SSLWantReadError:
                pass
        raw.send(outgoing.read())
        assert client.version() in ("TLSv1.2", "TLSv1.3")


def test_a_partial_client_hello_then_eof_is_one_handshake_failure(server: RunningServer
                                                                  ) -> None:
    # waiting for the rest of the record must end when the peer closes instead
    with RawClient("127.0.0.1", tls_port(server)) as raw:
        raw.send(b"\x16\x03\x01\x02\x00\x01\x00")
        raw.sock.shutdown(socket.SHUT_WR)
        assert raw.sock.recv(64)[:1] in (b"", b"\x15")
    assert handshake_failures(server)[0]["reason"] == "peer-closed-during-handshake"


def test_alpn_http11_is_selected_and_old_versions_are_refused(server: RunningServer,
                                                              certs: Certs) -> None:
    with tls_client(server, certs.client_context(alpn=["h2", "http/1.1"])) as client:
        assert isinstance(client.sock, ssl.SSLSocket)
        assert client.sock.selected_alpn_protocol() == "http/1.1"
    old = certs.client_context()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("ALL:@SECLEVEL=0")
    with pytest.raises(ssl.SSLError):
        https(server, old, "GET", "/")


_CBC_SUITE = "ECDHE-ECDSA-AES128-SHA256"  # offered by the stdlib's default server list


def _tls12_client(certs: Certs, ciphers: str) -> ssl.SSLContext:
    context = certs.client_context()
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(ciphers)
    return context


def test_tls12_offers_only_aead_ciphers_with_forward_secrecy_by_default(
        server: RunningServer, certs: Certs) -> None:
    # testssl.sh flags CBC suites ("obsolete", LUCKY13): a client offering nothing else
    # is refused, one offering an AEAD suite gets it
    with pytest.raises(ssl.SSLError):
        https(server, _tls12_client(certs, _CBC_SUITE), "GET", "/")
    assert handshake_failures(server)[0]["event"] == "tls-handshake-failed"
    with tls_client(server, _tls12_client(certs, f"{_CBC_SUITE}:ECDHE-ECDSA-AES256-GCM-SHA384")
                    ) as client:
        assert isinstance(client.sock, ssl.SSLSocket)
        assert client.sock.cipher()[0] == "ECDHE-ECDSA-AES256-GCM-SHA384"


def test_tls_ciphers_setting_is_the_tls12_list(tmp_path: Path, certs: Certs) -> None:
    running = tls_server(tmp_path, certs, tls={"ciphers": f"{_CBC_SUITE}"})
    try:
        with tls_client(running, _tls12_client(certs, f"ECDHE-ECDSA-AES256-GCM-SHA384:"
                                                      f"{_CBC_SUITE}")) as client:
            assert isinstance(client.sock, ssl.SSLSocket)
            assert client.sock.cipher()[0] == _CBC_SUITE
        # TLS 1.3 keeps its own (AEAD) suites whatever the list says
        with tls_client(running, certs.client_context()) as client:
            assert isinstance(client.sock, ssl.SSLSocket)
            assert client.sock.version() == "TLSv1.3"
    finally:
        running.stop()


# ---- SNI -------------------------------------------------------------------------------------


def test_sni_picks_each_certificate_and_the_default_for_an_unknown_name(
        tmp_path: Path, certs: Certs) -> None:
    a_cert, a_key = certs.issue("a", "a.example")
    b_cert, b_key = certs.issue("b", "*.b.example")
    running = tls_server(tmp_path, certs, tls={"certificates": (
        {"names": ("a.example",), "cert": str(a_cert), "key": str(a_key)},
        {"names": ("*.b.example",), "cert": str(b_cert), "key": str(b_key)})})
    try:
        context = certs.client_context()
        for name, expected in (("a.example", "a.example"), ("www.b.example", "*.b.example"),
                               ("localhost", "localhost")):
            with tls_client(running, context, server_hostname=name) as client:
                assert peer_names(client.sock)[0] == expected
        loose = certs.client_context()
        loose.check_hostname = False
        with tls_client(running, loose, server_hostname="unknown.example") as client:
            assert peer_names(client.sock)[0] == "localhost"
            client.send(request_bytes("GET", "/echo/sni"))
            assert client.read_response().body == b"sni"
        line = wait_for_log(running.access_log, lambda line: line.get("path") == "/echo/sni")[0]
        assert line["sni"] == "unknown.example"
    finally:
        running.stop()


def test_an_encrypted_key_is_read_with_its_password_file(tmp_path: Path,
                                                         certs: Certs) -> None:
    cert, key = certs.issue("locked", "localhost", password=b"s3cret")
    password = tmp_path / "key.pass"
    password.write_text("s3cret\n")
    running = tls_server(tmp_path, certs, tls={"cert": cert, "key": key,
                                               "key_password_file": password})
    try:
        assert https(running, certs.client_context(), "GET", "/echo/locked")[2] == b"locked"
    finally:
        running.stop()


# ---- client certificates ---------------------------------------------------------------------


def test_required_client_certificates(tmp_path: Path, certs: Certs) -> None:
    alice = certs.issue_client("alice", "alice@example.org")
    running = tls_server(tmp_path, certs, tls={"client_ca": certs.ca_file,
                                               "verify_client": "required"})
    try:
        status, _, body = https(running, certs.client_context(cert=alice), "GET", "/echo/me")
        assert (status, body) == (200, b"me")
        line = wait_for_log(running.access_log, lambda line: line.get("path") == "/echo/me")[0]
        assert "alice@example.org" in line["tls_client_subject"]
        with pytest.raises((ssl.SSLError, ConnectionError)):
            https(running, certs.client_context(), "GET", "/echo/anonymous")
        failure = handshake_failures(running)[0]
        assert "certificate" in failure["reason"]
    finally:
        running.stop()


def test_optional_client_certificates_and_conn_info(tmp_path: Path, certs: Certs) -> None:
    from reactor.app.types import FunctionApp, Request, Response

    seen: list[dict] = []

    def handler(request: Request) -> Response:
        seen.append(dict(request.conn_info, scheme=request.scheme))
        return Response(200, [], b"ok")

    bob = certs.issue_client("bob", "bob")
    running = tls_server(tmp_path, certs, tls={"client_ca": certs.ca_file,
                                               "verify_client": "optional"})
    try:
        on_loop(running, setattr, running.server.http, "app", FunctionApp(handler))
        assert https(running, certs.client_context(), "GET", "/")[0] == 200
        assert https(running, certs.client_context(cert=bob), "GET", "/")[0] == 200
    finally:
        running.stop()
    anonymous, known = seen
    assert anonymous["scheme"] == "https" and "tls_client_subject" not in anonymous
    assert known["tls_client_subject"].startswith("CN=bob")
    assert known["tls_client_issuer"] and known["tls_client_serial"]
    assert len(known["tls_client_fingerprint"]) == 64


def test_a_client_subject_is_written_with_rfc_4514_escapes(tmp_path: Path,
                                                           certs: Certs) -> None:
    """An Active Directory CA names people "Doe, José": the subject was logged as
    `CN=Doe, José,OU=...`, which reads as two attributes (a parser takes CN "Doe"), and
    `O=Acme+Co` as a multi-valued RDN. RFC 4514 (nginx's $ssl_client_s_dn) escapes them;
    UTF-8 stays as it is."""
    doe = certs.issue("doe", "doe@example.org", common_name="Doe, José",
                      organization_name="Acme+Co", organization_unit_name="#ops ")
    running = tls_server(tmp_path, certs, tls={"client_ca": certs.ca_file,
                                               "verify_client": "required"})
    try:
        status, _, _ = https(running, certs.client_context(cert=doe), "GET", "/echo/doe")
        assert status == 200
        line = wait_for_log(running.access_log, lambda line: line.get("path") == "/echo/doe")[0]
    finally:
        running.stop()
    assert line["tls_client_subject"] == "CN=Doe\\, José,OU=\\#ops\\ ,O=Acme\\+Co"


# ---- HSTS and the redirect -------------------------------------------------------------------


def test_hsts_on_https_only_and_the_redirect_of_plain_http(tmp_path: Path,
                                                           certs: Certs) -> None:
    running = tls_server(tmp_path, certs, tls={"hsts_max_age": 31536000,
                                               "redirect_http": True})
    try:
        status, headers, _ = https(running, certs.client_context(), "GET", "/echo/x")
        assert status == 200 and headers["Strict-Transport-Security"] == "max-age=31536000"
        port = tls_port(running)
        status, headers, _ = fetch(running, "GET", "/echo/x?q=1",
                                   headers={"Host": f"example.org:{running.port}"})
        assert status == 308
        assert headers["Location"] == f"https://example.org:{port}/echo/x?q=1"
        assert "Strict-Transport-Security" not in headers
    finally:
        running.stop()


# ---- curl ------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_with_cacert(server: RunningServer, certs: Certs) -> None:
    url = f"https://localhost:{tls_port(server)}/echo/curl"
    done = subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert", str(certs.ca_file),
                           "-w", "\n%{http_version} %{ssl_verify_result}", url],
                          capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"curl\n1.1 0"


# ---- the pure parts ---------------------------------------------------------------------------


def test_client_hello_alpn_reads_the_offer_of_a_real_client_hello(certs: Certs) -> None:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    context = certs.client_context(alpn=["h2", "http/1.1"])
    client = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    hello = outgoing.read()
    assert client_hello_alpn(hello) == [b"h2", b"http/1.1"]
    assert client_hello_alpn(hello[:40]) is None
    bare = certs.client_context().wrap_bio(ssl.MemoryBIO(), outgoing,
                                           server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        bare.do_handshake()
    assert client_hello_alpn(outgoing.read()) is None


@pytest.mark.parametrize(("head", "url"), [
    (b"GET /a?b HTTP/1.1\r\nHost: example.org:8443\r\n\r\n", "https://example.org:8443/a?b"),
    (b"GET /a HTTP/1.1\r\n\r\n", "https://127.0.0.1:8443/a"),
    (b"GET /a HTTP/1.1\r\nHost: evil\r\n\tinjected\r\n\r\n", "https://evil/a"),
    (b"GET /a HTTP/1.1\r\nHost: a b<script>\r\n\r\n", "https://127.0.0.1:8443/a"),
    (b"\x00\x01garbage", "https://127.0.0.1:8443/"),
])
def test_https_url_of_a_plain_request(head: bytes, url: str) -> None:
    assert https_url(head, ("127.0.0.1", 8443)) == url


@pytest.mark.parametrize(("pattern", "name", "matches"), [
    ("a.example", "A.Example.", True), ("*.b.example", "x.b.example", True),
    ("*.b.example", "b.example", False), ("*.b.example", "x.y.b.example", False),
])
def test_name_matches(pattern: str, name: str, matches: bool) -> None:
    assert name_matches(pattern, name) is matches



def test_a_graceful_stop_drops_handshakes_and_closes_idle_tls_connections(
        tmp_path: Path, certs: Certs) -> None:
    running = tls_server(tmp_path, certs, timeouts={"tls_handshake_s": 60.0,
                                                    "shutdown_s": 60.0})
    silent = socket.create_connection(("127.0.0.1", tls_port(running)), timeout=10)
    try:
        with tls_client(running, certs.client_context()) as idle:
            idle.send(request_bytes("GET", "/echo/x"))
            assert idle.read_response().body == b"x"
            assert wait_until(lambda: on_loop(
                running, lambda: len(running.server.http.connections)) == 2)
            running.call(running.server.stop)
            running.thread.join(15)  # both timeouts are 60 s: neither may be waited for
            assert not running.thread.is_alive()
            assert idle.is_closed_by_peer()
        assert silent.recv(10) == b""
    finally:
        silent.close()
        running.stop()


@pytest.mark.expect_log("connection-limit-reached")
def test_at_the_limit_a_silent_tls_connection_makes_room(tmp_path: Path, certs: Certs) -> None:
    """A TLS connection that has sent nothing (no ClientHello) is as reusable as a silent
    plain one: held open by a client, such connections must not refuse every newcomer until
    their handshake timeout. One whose handshake has begun is not closed for it."""
    running = tls_server(tmp_path, certs, server={"max_connections": 3},
                         timeouts={"tls_handshake_s": 60.0})
    count = lambda: on_loop(running, lambda: len(running.server.http.connections))  # noqa: E731
    port = tls_port(running)
    mid = socket.create_connection(("127.0.0.1", port), timeout=10)
    silent = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        mid.sendall(b"\x16\x03\x01\x00\xc8\x01\x00")  # a ClientHello begins: mid-handshake
        assert wait_until(lambda: count() == 2)
        with tls_client(running, certs.client_context()) as talking:
            assert wait_until(lambda: count() == 3)
            with tls_client(running, certs.client_context()) as new:
                new.send(request_bytes("GET", "/echo/new"))
                assert new.read_response().body == b"new"
            assert silent.recv(10) == b""  # the silent one made room, though newer
            talking.send(request_bytes("GET", "/echo/kept"))
            assert talking.read_response().body == b"kept"
            mid.setblocking(False)
            with pytest.raises(BlockingIOError):  # still open, its handshake waiting
                mid.recv(10)
        assert running.server.http.counters["connections_reused_total"] == 1
    finally:
        mid.close()
        silent.close()
        running.stop()
