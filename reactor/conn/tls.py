"""TLS terminated in the loop: the TLS transport, its non-blocking handshake, SNI selection.

Strategy: `TlsTransport` is a `SocketTransport` whose four socket primitives go through an
`ssl.SSLSocket` (made with `do_handshake_on_connect=False`), and whose `start` first runs the
handshake as loop callbacks: `SSLWantReadError`/`SSLWantWriteError` say which readiness to
wait for, a timer bounds the whole handshake, and a failure is one `tls-handshake-failed`
line, never a traceback. Before wrapping, the first bytes are peeked at: plain HTTP sent to
the TLS port gets a readable 400 naming the https URL (nginx's 497), and a ClientHello that
offers ALPN protocols without HTTP/1.x gets the fatal `no_application_protocol` alert
(RFC 7301 3.2) instead of a handshake, one whose server name is not ASCII the fatal
`unrecognized_name` (RFC 6066 3; `ssl` would print a traceback for it). These checks wait
for the whole ClientHello however the peer splits it (TCP segments, TLS records), with
SO_RCVLOWAT so the peeked socket does not spin the loop meanwhile. Behind a
PROXY-protocol listener a preamble step comes first (`start_preamble`): it reads the header
by peeking too and takes only the header's bytes off the socket, so `ssl` finds the
ClientHello there (reactor/conn/proxy.py).

Writes: OpenSSL's `SSL_write` without partial writes must be retried with the same bytes
after `SSLWantWriteError`, so the transport remembers the exact piece it handed over
(`_retry`) and returns its length once it went out; the write buffer only ever sees whole
pieces sent. File ranges cannot be `sendfile`d through TLS: each is read in the pool one
chunk at a time (`os.pread`), the next read starting when the previous chunk was encrypted,
so at most one chunk per connection is in memory, and the write buffer's back-pressure is
unchanged. Reads drain `pending()`: bytes OpenSSL already decrypted are invisible to select.
Closing sends close_notify only when it cannot block (the socket is non-blocking and no
write is half done), and never waits for the peer's.

Kernel TLS would slot in here: a context with `ssl.OP_ENABLE_KTLS` and a `send_file` using
`SSL_sendfile`; this machine's kernel has no TLS ULP, so there is no such path (README).
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import ssl
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, BinaryIO

from reactor.conn.interfaces import PeekingProtocol, StreamProtocol, Transport
from reactor.conn.transport import RECV_BYTES, SocketTransport
from reactor.loop import EventLoop, TimerHandle

HANDSHAKE_TIMEOUT_S = 10.0
ALPN_PROTOCOLS = ("http/1.1", "http/1.0")
# One SSL_write hands at most this much plaintext to OpenSSL (16 records), so a retry after
# SSLWantWriteError holds a bounded piece.
TLS_WRITE_BYTES = 256 * 1024
TLS_RECORD_BYTES = 16 * 1024
# A file body is read in the pool in pieces of this size, one piece in flight per connection.
FILE_CHUNK_BYTES = 256 * 1024
# The first TLS record (the ClientHello, in practice whole) as peeked at before wrapping.
_HELLO_PEEK_BYTES = 5 + TLS_RECORD_BYTES
_HTTP_METHOD_START = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
# A fatal no_application_protocol(120) alert in a plaintext TLS 1.2 record (RFC 7301 3.2).
_ALERT_NO_APPLICATION_PROTOCOL = b"\x15\x03\x03\x00\x02\x02\x78"
# ... and unrecognized_name(112) (RFC 6066 3)
_ALERT_UNRECOGNIZED_NAME = b"\x15\x03\x03\x00\x02\x02\x70"
_HOST_CHARS = re.compile(rb"[A-Za-z0-9.\-:\[\]]{1,255}")
_DN_SPECIAL = re.compile(r'["+,;<>\\]')
_DN_SHORT = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU",
             "countryName": "C", "stateOrProvinceName": "ST", "localityName": "L",
             "emailAddress": "emailAddress", "domainComponent": "DC"}

HANDSHAKES, HANDSHAKE_FAILURES = "tls_handshakes_total", "tls_handshake_failures_total"
Report = Callable[[dict[str, Any]], None]
"""Where the transport reports a refused connection (the server's `RequestLog.rejected`)."""


class TlsContexts:
    """The TLS settings of the listeners that share them: the server context new
    connections are wrapped with, replaced whole by a reload (connections already made
    keep the context they started with), and the handshake timeout."""

    __slots__ = ("context", "handshake_timeout_s")

    def __init__(self, context: ssl.SSLContext | None = None, *,
                 handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S) -> None:
        self.context = context
        self.handshake_timeout_s = handshake_timeout_s


# ---- SNI ----------------------------------------------------------------------------------


def name_matches(pattern: str, name: str) -> bool:
    """`name` is `pattern`, or `pattern` is "*.example.com" and `name` one label below it."""
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == name


class SniSelector:
    """Picks the context whose certificate names the server name the client asked for.

    Installed as the default context's `sni_callback`: exact names win over wildcards, an
    unknown name (or none) keeps the default context. The name asked for is remembered on
    the connection (`sni_of`) for the request's `conn_info` and the access log.
    """

    def __init__(self, named: Iterable[tuple[Iterable[str], ssl.SSLContext]]) -> None:
        self.exact: dict[str, ssl.SSLContext] = {}
        self.wildcards: list[tuple[str, ssl.SSLContext]] = []
        for names, context in named:
            for name in names:
                if name.startswith("*."):
                    self.wildcards.append((name, context))
                else:
                    self.exact.setdefault(name.lower().rstrip("."), context)

    def __call__(self, conn: Any, server_name: str | None, _context: ssl.SSLContext
                 ) -> None:
        if server_name is None:
            return None
        try:
            conn.reactor_sni = server_name
        except AttributeError:
            pass
        name = server_name.lower().rstrip(".")
        chosen = self.exact.get(name)
        if chosen is None:
            chosen = next((ctx for pattern, ctx in self.wildcards
                           if name_matches(pattern, name)), None)
        if chosen is not None:
            conn.context = chosen
        return None


def sni_of(sock: ssl.SSLSocket) -> str | None:
    return getattr(sock, "reactor_sni", None)


# ---- the ClientHello, peeked at -----------------------------------------------------------


def client_hello_extensions(record: bytes) -> dict[int, bytes] | None:
    """The extensions (type: data, the first of a type) of a TLS record holding a whole
    ClientHello (RFC 8446 4.1.2); None when the bytes are not one."""
    try:
        if record[0] != 0x16 or record[5] != 0x01:
            return None
        pos = 5 + 4 + 2 + 32  # record header, handshake header, legacy_version, random
        pos += 1 + record[pos]  # legacy_session_id
        pos += 2 + int.from_bytes(record[pos:pos + 2], "big")  # cipher_suites
        pos += 1 + record[pos]  # legacy_compression_methods
        end = pos + 2 + int.from_bytes(record[pos:pos + 2], "big")
        if end > len(record):
            return None
        pos += 2
        found: dict[int, bytes] = {}
        while pos + 4 <= end:
            kind = int.from_bytes(record[pos:pos + 2], "big")
            size = int.from_bytes(record[pos + 2:pos + 4], "big")
            pos += 4
            found.setdefault(kind, bytes(record[pos:pos + size]))
            pos += size
    except IndexError:
        return None
    return found


def first_handshake(head: bytes) -> tuple[bytes | None, int]:
    """The first handshake message of the TLS records `head` begins with, as one record
    (for `client_hello_extensions`), and the bytes of `head` it took; or None and the bytes
    needed to tell (0: never, `head` does not begin with handshake records). A client may
    split the message over several records (RFC 8446 5.1), which `ssl` reassembles."""
    message = b""
    pos = 0
    while True:
        if len(head) > pos and head[pos] != 0x16:
            return None, 0
        if len(head) < pos + 5:
            return None, pos + 5
        size = int.from_bytes(head[pos + 3:pos + 5], "big")
        if size == 0:  # zero-length handshake records are forbidden
            return None, 0
        end = pos + 5 + size
        if len(head) < end:
            return None, end
        message += head[pos + 5:end]
        pos = end
        if len(message) >= 4:
            total = 4 + int.from_bytes(message[1:4], "big")
            if len(message) >= total:
                return head[:5] + message[:total], pos
            if total > len(message) + _HELLO_PEEK_BYTES:
                return None, 0


def client_hello_alpn(record: bytes) -> list[bytes] | None:
    """The ALPN protocols offered in a TLS record holding a ClientHello (RFC 7301 3.1);
    None when it offers none or the bytes are not a whole ClientHello."""
    extensions = client_hello_extensions(record)
    return None if extensions is None else _alpn_offered(extensions)


def _alpn_offered(extensions: dict[int, bytes]) -> list[bytes] | None:
    data = extensions.get(16)  # application_layer_protocol_negotiation
    if data is None:
        return None
    names, at = [], 2  # after the list's length
    while at < len(data):
        length = data[at]
        names.append(data[at + 1:at + 1 + length])
        at += 1 + length
    return names


def _server_name(extensions: dict[int, bytes]) -> bytes | None:
    """The host_name of the server_name extension (RFC 6066 3), or None."""
    data = extensions.get(0)
    if data is None:
        return None
    at = 2  # after the list's length: entries of name_type, a 2-byte length, the name
    while at + 3 <= len(data):
        length = int.from_bytes(data[at + 1:at + 3], "big")
        if data[at] == 0:
            return data[at + 3:at + 3 + length]
        at += 3 + length
    return None


def https_url(head: bytes, local: tuple[str, int]) -> str:
    """The https URL a plain-HTTP request sent to the TLS port meant (Host header, target)."""
    line, _, rest = head.partition(b"\r\n")
    parts = line.split(b" ")
    target = parts[1] if len(parts) == 3 and parts[1].startswith(b"/") else b"/"
    host = b""
    for field in rest.split(b"\r\n"):
        name, _, value = field.partition(b":")
        if name.strip().lower() == b"host":
            host = value.strip()
            break
    if not _HOST_CHARS.fullmatch(host):
        address, port = local[0], local[1]
        host = (f"[{address}]:{port}" if ":" in address else f"{address}:{port}").encode()
    shown_target = target if len(target) <= 1024 else b"/"
    return "https://" + (host + shown_target).decode("latin-1")


# ---- the transport ------------------------------------------------------------------------


class Handshaking:
    """The transport's protocol while the handshake runs: a graceful stop drops it, and at
    the connection limit one whose client has sent nothing yet makes room (`reusable`)."""

    __slots__ = ("transport",)

    def __init__(self, transport: TlsTransport) -> None:
        self.transport = transport

    @property
    def conn_id(self) -> int:
        return self.transport._conn_id

    @property
    def reusable(self) -> bool:
        """No byte of a ClientHello yet, read or waiting: a silent connection, as a plain
        one that has sent nothing (once the hello came, the handshake is under way)."""
        transport = self.transport
        return (transport._ssl is None and not transport._closing
                and not transport.input_waiting)

    awaiting_request = reusable

    def close_idle(self) -> None:
        self.transport.abort()

    def connection_made(self, transport: Transport) -> None: ...
    def data_received(self, data: bytes) -> None: ...
    def eof_received(self) -> None: ...
    def connection_lost(self, exc: BaseException | None) -> None: ...
    def pause_writing(self) -> None: ...
    def resume_writing(self) -> None: ...
    def write_blocked(self) -> None: ...

    def shutdown(self) -> None:
        self.transport.abort()


def _pread(file: BinaryIO, offset: int, size: int) -> bytes:
    return os.pread(file.fileno(), size, offset)


def _distinguished_name(rdns: Any) -> str:
    """A certificate name as getpeercert() gives it, as RFC 4514 writes it: "CN=a,O=b",
    in reverse order, special characters escaped ("CN=Doe\\, John": an AD-style name)."""
    parts = []
    for rdn in reversed(rdns or ()):
        parts.append("+".join(f"{_DN_SHORT.get(key, key)}={_dn_value(value)}"
                              for key, value in rdn))
    return ",".join(parts)


def _dn_value(value: str) -> str:
    """RFC 4514 2.4: `"+,;<>\\` anywhere, `#` or a space first, a space last and NUL
    escaped (as OpenSSL's RFC 2253 form, nginx's $ssl_client_s_dn); other text as it is."""
    if not value:
        return value
    last = "\\ " if len(value) > 1 and value[-1] == " " else ""
    text = _DN_SPECIAL.sub(r"\\\g<0>", value[:-1] if last else value).replace("\0", "\\00")
    return ("\\" + text if value[0] in "# " else text) + last


class TlsTransport(SocketTransport):
    """A TCP connection with TLS terminated here; the protocol cannot tell it from plain."""

    __slots__ = (
        "_app_protocol", "_close_notified", "_conn_id", "_context", "_counters",
        "_established", "_file_chunk", "_file_reading", "_file_waiting", "_handshake_timer",
        "_hello_wait", "_preamble", "_report", "_retry", "_ssl", "_tls",
    )

    # A file's records follow its head only after a pool read: the head would leave alone.
    CORK_FILES = True

    def __init__(self, loop: EventLoop, sock: socket.socket, peer: tuple[str, int],
                 tls: TlsContexts, *, conn_id: int = 0, report: Report | None = None,
                 on_closed: Callable[[SocketTransport], None] | None = None,
                 counters: Counter[str] | None = None) -> None:
        super().__init__(loop, sock, peer, on_closed=on_closed)
        self._tls = tls
        # Where handshakes done and failed are counted (the server's `counters`; ops/metrics
        # exports them as tls_handshakes_total and tls_handshake_failures_total).
        self._counters = counters if counters is not None else Counter()
        self._context = tls.context  # pinned now: a reload changes new connections only
        self._conn_id = conn_id
        self._report = report
        self._ssl: ssl.SSLSocket | None = None
        self._established = False
        self._close_notified = False
        self._app_protocol: StreamProtocol | None = None
        self._preamble: PeekingProtocol | None = None  # the step before the handshake
        self._handshake_timer: TimerHandle | None = None
        self._hello_wait = 0  # the SO_RCVLOWAT set while the first record arrives, 0: none
        self._retry: bytes | memoryview | None = None  # the piece OpenSSL must be given again
        self._file_chunk: tuple[BinaryIO, int, bytes | BaseException] | None = None
        self._file_reading = False
        self._file_waiting = False
        self.extra["scheme"] = "https"

    # ---- a preamble (the PROXY header) ------------------------------------------------------
    def start_preamble(self, step: PeekingProtocol) -> None:
        """Before the handshake, `step` reads a preamble the peer sends in clear (a PROXY
        header), by peeking: `ssl` reads from the socket itself, so the bytes after the
        preamble (the ClientHello) must still be there when the step calls `start`."""
        self._protocol = self._preamble = step
        step.connection_made(self)
        if not self._closing:
            self._loop.add_reader(self._sock, self._preamble_readable)

    def _preamble_readable(self) -> None:
        step = self._preamble
        assert step is not None  # `start` ends the step and replaces this reader
        sock = self._sock
        try:
            data = sock.recv(step.peek_bytes, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._close_now(exc)
            return
        if not data:
            self._loop.remove_reader(sock)
            step.eof_received()
            return
        used = step.peeked(data)
        if self._closed:
            return
        # Take the step's bytes now, before the loop runs anything else: a partial header
        # is taken too, or the socket would stay readable and spin the loop until the rest
        # came. They were peeked, so these reads find them and never block.
        try:
            while used > 0:
                taken = sock.recv(used)
                if not taken:
                    raise ConnectionResetError
                used -= len(taken)
        except OSError as exc:
            self._close_now(exc)

    # ---- handshake ------------------------------------------------------------------------
    def start(self, protocol: StreamProtocol) -> None:
        """Run the handshake; `protocol` gets `connection_made` once it succeeded."""
        self._preamble = None
        self._app_protocol = protocol
        self._protocol = Handshaking(self)
        self._handshake_timer = self._loop.call_later(self._tls.handshake_timeout_s,
                                                      self._handshake_expired)
        self._loop.add_reader(self._sock, self._hello_readable)

    def _hello_readable(self) -> None:
        """The first bytes: a ClientHello gets the handshake; plain HTTP gets a 400."""
        try:
            head = self._sock.recv(_HELLO_PEEK_BYTES, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._handshake_failed(_os_reason(exc))
            return
        if not head:  # connected and left (a TCP health check): nothing worth a line
            self._close_now(None)
            return
        if head[0] in _HTTP_METHOD_START:
            self._refuse_plain_http()
            return
        hello, size = first_handshake(head)
        if hello is None and 0 < size <= _HELLO_PEEK_BYTES and size > self._hello_wait:
            # The checks need the whole ClientHello, however the peer split it into
            # segments (or records). Peeked bytes stay readable, so waiting for the rest by
            # returning would spin the loop: SO_RCVLOWAT has the kernel report the socket
            # readable only once that many bytes are there (or at EOF: woken short of them,
            # `ssl` gets what there is, as it did without the wait).
            try:
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, size)
            except OSError:
                pass
            else:
                self._hello_wait = size
                return
        if self._hello_wait:
            self._hello_wait = 0
            try:  # every byte counts again: `ssl` and HTTP wait for what they need
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
            except OSError as exc:
                self._handshake_failed(_os_reason(exc))
                return
        if hello is not None:
            extensions = client_hello_extensions(hello)
            if extensions:
                offered = _alpn_offered(extensions)
                if offered is not None and not any(
                        name.decode("latin-1") in ALPN_PROTOCOLS for name in offered):
                    # RFC 7301 3.2: no HTTP/1.x among the protocols offered
                    self._refuse_hello(_ALERT_NO_APPLICATION_PROTOCOL,
                                       "no_application_protocol",
                                       alpn_offered=[name.decode("latin-1") for name in offered])
                    return
                server_name = _server_name(extensions)
                if server_name is not None and not server_name.isascii():
                    # RFC 6066 3: a host name is ASCII (an IDN goes as its A-label); `ssl`
                    # cannot make this one a str for the SNI callback: it fails with
                    # internal_error and prints a traceback to stderr. Refused as OpenSSL
                    # refuses a NUL in the name.
                    self._refuse_hello(_ALERT_UNRECOGNIZED_NAME, "unrecognized_name",
                                       sni=server_name.decode("utf-8", "backslashreplace"))
                    return
        self._wrap()

    def _wrap(self) -> None:
        # The selector keeps its registration of the descriptor (the wrapped socket has the
        # same one): re-registering costs a failed lookup whose KeyError formats the
        # socket's repr, several system calls per connection.
        context = self._context
        if context is None:
            self._handshake_failed("no TLS context configured")
            return
        fd = self._sock.fileno()
        try:
            wrapped = context.wrap_socket(self._sock, server_side=True,
                                          do_handshake_on_connect=False)
        except (OSError, ValueError) as exc:
            self._loop.forget(fd)  # the socket object may be detached from it already
            self._handshake_failed(_ssl_reason(exc))
            return
        self._sock = self._ssl = wrapped
        self._handshake_step()

    def _handshake_step(self) -> None:
        sock = self._ssl
        assert sock is not None
        loop = self._loop
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            loop.remove_writer(sock)
            loop.add_reader(sock, self._handshake_step)
            return
        except ssl.SSLWantWriteError:
            loop.remove_reader(sock)
            loop.add_writer(sock, self._handshake_step)
            return
        except ssl.SSLError as exc:
            self._handshake_failed(_ssl_reason(exc))
            return
        except OSError as exc:
            self._handshake_failed(_os_reason(exc))
            return
        self._handshake_done(sock)

    def _handshake_done(self, sock: ssl.SSLSocket) -> None:
        self._cancel_handshake_timer()
        self._established = True
        self._counters[HANDSHAKES] += 1
        self._describe(sock)
        # The transport's own reading takes over the registration (see `_wrap`).
        self._loop.remove_writer(sock)
        self._reading = True
        self._loop.add_reader(sock, self._on_readable)
        protocol, self._app_protocol = self._app_protocol, None
        assert protocol is not None
        super().start(protocol)
        if sock.pending() and self._reading and not self._closing:
            self._loop.call_soon(self._on_readable)  # decrypted already: select cannot see it

    def _describe(self, sock: ssl.SSLSocket) -> None:
        """The connection's TLS facts, for `Request.conn_info` and the access log."""
        extra = self.extra
        cipher = sock.cipher()
        extra["tls_version"] = sock.version()
        extra["tls_cipher"] = cipher[0] if cipher else None
        extra["sni"] = sni_of(sock)
        extra["alpn"] = sock.selected_alpn_protocol()
        der = sock.getpeercert(binary_form=True)
        if der:
            cert: dict[str, Any] = sock.getpeercert() or {}
            extra["tls_client_subject"] = _distinguished_name(cert.get("subject"))
            extra["tls_client_issuer"] = _distinguished_name(cert.get("issuer"))
            extra["tls_client_serial"] = cert.get("serialNumber")
            extra["tls_client_fingerprint"] = hashlib.sha256(der).hexdigest()

    def _handshake_expired(self) -> None:
        self._handshake_timer = None
        if not self._established and not self._closed:
            self._handshake_failed("handshake-timeout")

    def _cancel_handshake_timer(self) -> None:
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None

    def _handshake_failed(self, reason: str, **fields: Any) -> None:
        self._counters[HANDSHAKE_FAILURES] += 1
        self._rejected({"event_kind": "tls-handshake-failed", "reason": reason,
                        "sni": sni_of(self._ssl) if self._ssl is not None else None,
                        **fields})
        self._close_now(None)

    def _rejected(self, fields: dict[str, Any]) -> None:
        if self._report is not None:
            client = self.extra.get("client_addr")  # behind a PROXY header: the real client
            where = {} if client is None else {"client_addr": client}
            self._report({"conn_id": self._conn_id, "remote_addr": self.peer[0],
                          "remote_port": self.peer[1], **where, **fields})

    def _refuse_hello(self, alert: bytes, reason: str, **fields: Any) -> None:
        """A ClientHello the handshake must not go on with: the fatal `alert` in a plaintext
        record, then one `tls-handshake-failed` line."""
        try:
            self._sock.send(alert)
        except OSError:
            pass
        self._handshake_failed(reason, **fields)

    def _refuse_plain_http(self) -> None:
        """Plain HTTP on the TLS port: a readable 400 naming the https URL, then close."""
        self._loop.forget(self._sock)
        self._cancel_handshake_timer()
        try:
            head = self._sock.recv(8192)
            local = self._sock.getsockname()
        except OSError:
            self._close_now(None)
            return
        url = https_url(head, local)
        body = (f"400 Bad Request: this port speaks HTTPS; plain HTTP was sent to it.\n"
                f"Use {url}\n").encode("latin-1")
        self._rejected({"status": 400, "reason": "plain-http-to-tls-port", "https_url": url})
        self.write(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                   b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        self.close(linger=True)

    # ---- socket primitives --------------------------------------------------------------
    def _recv(self) -> bytes:
        sock = self._ssl
        if sock is None or self._closing:  # a refusal, or lingering: raw bytes, discarded
            return socket.socket.recv(self._sock, RECV_BYTES)
        try:
            data = sock.recv(RECV_BYTES)
            # Drain what OpenSSL holds decrypted, and keep reading while records come full
            # (a bulk upload), up to RECV_BYTES: one callback per 16 KiB record would be slow.
            size = len(data)
            while True:
                pending = sock.pending()
                if not pending and (size % TLS_RECORD_BYTES or not size
                                    or size >= RECV_BYTES):
                    return data
                try:
                    more = sock.recv(max(pending, RECV_BYTES - size))
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    return data
                if not more:
                    return data
                data += more
                size += len(more)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise BlockingIOError from None

    def try_write(self, data: bytes) -> bool:
        # Always through the buffer: a record OpenSSL could not send must be offered again,
        # whole, by the flush that owns the retry.
        self.write(data)
        return False

    def send_chunks(self, chunks: list[bytes | memoryview], more: bool = False) -> int:
        sock = self._ssl
        if sock is None:
            return super().send_chunks(chunks, more)
        # `more` is not for TLS records (the cork holds the head instead, CORK_FILES)
        data = self._retry
        if data is None:
            first = chunks[0]
            if len(chunks) == 1 or len(first) >= TLS_WRITE_BYTES:
                data = first if len(first) <= TLS_WRITE_BYTES else (
                    memoryview(first)[:TLS_WRITE_BYTES])
            else:
                parts, total = [], 0
                for chunk in chunks:
                    if total + len(chunk) > TLS_WRITE_BYTES:
                        break
                    parts.append(chunk)
                    total += len(chunk)
                data = b"".join(parts)
        return self._ssl_send(sock, data)

    def _ssl_send(self, sock: ssl.SSLSocket, data: bytes | memoryview) -> int:
        try:
            sent = sock.send(data)
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
            self._retry = data  # OpenSSL must be handed these same bytes again
            raise BlockingIOError from None
        self._retry = None
        return sent

    def send_file(self, file: BinaryIO, offset: int, count: int) -> int:
        """A file range through TLS: chunks read in the pool, encrypted here."""
        sock = self._ssl
        if sock is None:
            return super().send_file(file, offset, count)
        data = self._retry
        if data is None:
            chunk = self._file_chunk
            if chunk is None or chunk[0] is not file or chunk[1] != offset:
                self._read_file(file, offset, min(count, FILE_CHUNK_BYTES))
                self._await_file()
                raise BlockingIOError
            self._file_chunk = None
            piece = chunk[2]
            if isinstance(piece, BaseException):
                raise ConnectionAbortedError(f"file read failed: {piece}")
            if not piece:  # the file shrank under us: as sendfile at the end of a file
                return 0
            data = piece
        sent = self._ssl_send(sock, data)
        if count > sent:  # the next piece is read while this one travels
            self._read_file(file, offset + sent, min(count - sent, FILE_CHUNK_BYTES))
        return sent

    def _read_file(self, file: BinaryIO, offset: int, size: int) -> None:
        if self._file_reading:
            return  # one read in flight per connection
        self._file_reading = True
        self._loop.run_in_pool(_pread, (file, offset, size),
                               lambda data, error, _started: self._file_read(
                                   file, offset, data, error))

    def _file_read(self, file: BinaryIO, offset: int, data: bytes | None,
                   error: BaseException | None) -> None:
        self._file_reading = False
        if self._closed:
            return
        self._file_chunk = (file, offset, error if error is not None else data or b"")
        if self._file_waiting:
            self._file_waiting = False
            self._loop.add_writer(self._sock, self._on_writable)
            self._on_writable()

    def _await_file(self) -> None:
        """Nothing to send until the pool read lands: stop waking up on writability."""
        self._file_waiting = True
        if self._writing:
            self._loop.remove_writer(self._sock)
        # else the transport registers the writer after this send; its first wake-up
        # lands here again and removes it

    def _shutdown_write(self) -> None:
        self._notify_close()
        self._sock.shutdown(socket.SHUT_WR)

    # ---- closing --------------------------------------------------------------------------
    def _notify_close(self) -> None:
        """Send close_notify if that cannot block: established, no write half done."""
        sock = self._ssl
        if (sock is None or not self._established or self._close_notified
                or self._retry is not None):
            return
        self._close_notified = True
        try:
            sock.unwrap()  # sends ours; the peer's is not waited for (non-blocking)
        except (OSError, ValueError):
            pass

    @property
    def input_waiting(self) -> bool:
        """Also records OpenSSL decrypted already (with the handshake's last flight)."""
        sock = self._ssl
        if sock is not None and self._established:
            try:
                if sock.pending():
                    return True
            except (OSError, ValueError):
                return False
        return super().input_waiting

    def _close_now(self, exc: BaseException | None) -> None:
        if self._closed:
            return
        self._cancel_handshake_timer()
        if exc is None:
            self._notify_close()
        self._file_chunk = None
        super()._close_now(exc)


def _ssl_reason(exc: BaseException) -> str:
    """An SSLError's OpenSSL reason, lower-case ("tlsv1_alert_unknown_ca")."""
    if isinstance(exc, ssl.SSLEOFError):
        return "peer-closed-during-handshake"
    reason = getattr(exc, "reason", None)
    if reason:
        text = str(reason)
        # OpenSSL's reasons are tokens; an SSLError the ssl module makes itself may carry a
        # sentence as its reason ("Closed before TLS handshake with data in recv buffer.")
        return text.lower() if text.replace("_", "").isalnum() else _slug(text)
    return _slug(str(exc) or type(exc).__name__)


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, ConnectionResetError):
        return "connection-reset"
    if isinstance(exc, BrokenPipeError):
        return "broken-pipe"
    return _slug(exc.strerror or type(exc).__name__)


def _slug(text: str) -> str:
    """A reason operators can match: "Closed before TLS handshake with data in recv buffer."
    becomes "closed-before-tls-handshake-with-data-in-recv-buffer", as the other reasons."""
    words = "".join(char if char.isalnum() else " " for char in text.lower()).split()
    return "-".join(words)[:80] or "unknown"
