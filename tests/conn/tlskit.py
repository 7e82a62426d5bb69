"""TLS test tools: certificates made with trustme in the test's directory, a reactor server
with an HTTPS listener, and small clients (http.client, raw TLS sockets, a byte-trickling
handshake over memory BIOs)."""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import trustme
from cryptography.hazmat.primitives import serialization

from tests.conftest import RAW_TIMEOUT_S, RawClient, RunningServer, exchange, start_server


class Certs:
    """A throw-away CA; `issue` writes a certificate chain and key as PEM files."""

    def __init__(self, directory: Path, name: str = "ca") -> None:
        self.ca = trustme.CA()
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca_file = self.dir / f"{name}.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))

    def issue(self, name: str, *identities: str, password: bytes | None = None,
              **kwargs: Any) -> tuple[Path, Path]:
        cert = self.ca.issue_cert(*identities, **kwargs)
        cert_path, key_path = self.dir / f"{name}.pem", self.dir / f"{name}.key"
        cert_path.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        key_pem = cert.private_key_pem.bytes()
        if password is not None:
            key = serialization.load_pem_private_key(key_pem, None)
            key_pem = key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.BestAvailableEncryption(password))
        key_path.write_bytes(key_pem)
        return cert_path, key_path

    def issue_client(self, name: str, identity: str) -> tuple[Path, Path]:
        """A client certificate (and key) for `identity` (an email or a name)."""
        return self.issue(name, identity, common_name=identity)

    def client_context(self, *, alpn: list[str] | None = None,
                       cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        if alpn is not None:
            context.set_alpn_protocols(alpn)
        if cert is not None:
            context.load_cert_chain(*cert)
        return context


def tls_server(tmp_path: Path, certs: Certs, *, tls: dict | None = None,
               **sections: dict) -> RunningServer:
    """A server with a plain listener and an HTTPS one (certificate for localhost)."""
    cert, key = certs.issue("server", "localhost", "127.0.0.1")
    settings = {"listen": ("localhost:0",), "cert": cert, "key": key, **(tls or {})}
    return start_server(tmp_path, tls=settings, **sections)


def tls_port(running: RunningServer) -> int:
    return running.server.tls_addresses[0][1]


def https(running: RunningServer, context: ssl.SSLContext, method: str, target: str,
          body: bytes | None = None, headers: dict[str, str] | None = None,
          host: str = "localhost") -> tuple[int, dict[str, str], bytes]:
    return exchange(http.client.HTTPSConnection(host, tls_port(running), context=context,
                                                timeout=RAW_TIMEOUT_S),
                    method, target, body, headers)


def tls_client(running: RunningServer, context: ssl.SSLContext,
               server_hostname: str | None = "localhost") -> RawClient:
    """A RawClient whose socket is a TLS connection to the server's HTTPS port."""
    client = RawClient("127.0.0.1", tls_port(running))
    client.sock = context.wrap_socket(client.sock, server_hostname=server_hostname)
    return client


def peer_names(sock: socket.socket) -> list[str]:
    """The subjectAltName values of the server's certificate, in order."""
    assert isinstance(sock, ssl.SSLSocket)
    cert: dict[str, Any] = sock.getpeercert() or {}
    return [str(value) for _kind, value in cert.get("subjectAltName", ())]


def peer_serial(sock: ssl.SSLSocket) -> str:
    cert = sock.getpeercert()
    assert cert
    return str(cert["serialNumber"])


def trickled_handshake(port: int, context: ssl.SSLContext, request: bytes,
                       delay_s: float = 0.001) -> bytes:
    """Handshake sending every byte in its own segment, then `request`; returns what the
    server answered until it closed the connection."""
    return bio_exchange(port, context, request, trickle_s=delay_s)


def bio_exchange(port: int, context: ssl.SSLContext, request: bytes, *,
                 trickle_s: float | None = None, preamble: bytes = b"",
                 preamble_pieces: int = 1, preamble_pause_s: float = 0.0) -> bytes:
    """A TLS exchange over memory BIOs, so the test decides how its bytes are cut into
    segments: `preamble` (a PROXY header) goes first, in the same segment as the
    ClientHello when `preamble_pieces` is 1, else in that many segments `preamble_pause_s`
    apart before it; with `trickle_s` every handshake byte is a segment of its own. Then
    `request`; returns what the server answered until it closed the connection."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    sock = socket.create_connection(("127.0.0.1", port), timeout=RAW_TIMEOUT_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        if preamble_pieces > 1:
            step = -(-len(preamble) // preamble_pieces)
            for at in range(0, len(preamble), step):
                sock.sendall(preamble[at:at + step])
                time.sleep(preamble_pause_s)
            preamble = b""
        while True:
            try:
                tls.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            flight = outgoing.read()
            if trickle_s is None:
                sock.sendall(preamble + flight)  # one send: one segment on loopback
            else:
                sock.sendall(preamble)
                for byte in flight:
                    sock.sendall(bytes([byte]))
                    time.sleep(trickle_s)
            preamble = b""
            if done:
                break
            data = sock.recv(65536)
            assert data, "the server closed during the handshake"
            incoming.write(data)
        tls.write(request)
        sock.sendall(outgoing.read())
        answer = b""
        while True:
            try:
                piece = tls.read(65536)
                if not piece:  # close_notify
                    return answer
                answer += piece
                continue
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:
                return answer
            data = sock.recv(65536)
            if not data:
                return answer
            incoming.write(data)
    finally:
        sock.close()
