"""HTTPS set-up from `[tls]`: server contexts built and checked, swapped on reload, the
HSTS header and the plain-HTTP redirect.

Strategy: `build_tls(config)` does everything that can fail -- read the key password, load
every certificate/key pair, check that each key matches its certificate, that no certificate
has expired and that each SNI entry's names are in its certificate, load the client CA --
and raises `TlsError` whose text is one line naming the setting and the file. Only then does
the caller swap the result into the listeners' `TlsContexts` (one assignment: connections
already made keep the context they were wrapped with). The stdlib server context is the
base: TLS 1.2 minimum (1.3 preferred, as OpenSSL negotiates the highest), no compression,
no renegotiation, the server's cipher order over `tls.ciphers` (AEAD with forward secrecy by
default), ALPN http/1.1.
"""

from __future__ import annotations

import os
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reactor.app.types import Application, Dispatch, Offload, Request, Response, Upload
from reactor.conn.tls import ALPN_PROTOCOLS, SniSelector, name_matches
from reactor.ops.kinds import parse_listen

if TYPE_CHECKING:
    from reactor.ops.settings import Config, TlsConfig

_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
_VERIFY = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
WATCH_INTERVAL_S = 5.0


class TlsError(Exception):
    """A TLS setting cannot work; str() is one line naming the setting and the file."""


@dataclass(frozen=True)
class Pair:
    """One certificate/key pair as configured: where it is named, and its files."""

    where: str  # "tls" or "tls.certificates[2]"
    cert: Path
    key: Path
    password_file: Path | None
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Contradiction:
    """[tls] settings that cannot work together (found without reading a file): `key` and
    `reason` make the message; `cause` is the setting whose value makes it a problem, for the
    configuration loader to name where that value came from (file and line, environment)."""

    cause: str
    key: str
    reason: str

    def __str__(self) -> str:
        return f"{self.key}: {self.reason}"


def contradiction(config: Config) -> Contradiction | None:
    """The first contradiction among the [tls] settings of `config`, or None."""
    tls = config.tls
    if (tls.cert is None) != (tls.key is None):
        return Contradiction("tls.cert" if tls.cert is not None else "tls.key", "tls",
                             "cert and key go together; set both (or neither)")
    if tls.listen and tls.cert is None:
        return Contradiction("tls.listen", "tls.cert",
                             "tls.listen is set, so tls.cert and tls.key (the default"
                             " certificate) must be too")
    both = sorted(a for a in set(tls.listen) & set(config.server.listen)
                  if parse_listen(a)[1] != 0)  # port 0: two different free ports
    if both:
        return Contradiction("tls.listen", "tls.listen", f"{both[0]} is also in server.listen")
    if tls.verify_client != "none" and tls.client_ca is None:
        return Contradiction("tls.verify_client", "tls.client_ca",
                             f"verify_client = {tls.verify_client!r} needs the CA file that"
                             " signs client certificates")
    return None


def pairs(tls: TlsConfig) -> list[Pair]:
    found = []
    if tls.cert is not None or tls.key is not None:
        if tls.cert is None or tls.key is None:  # the loader refuses it first (contradiction)
            raise TlsError("tls: cert and key go together; set both (or neither)")
        found.append(Pair("tls", tls.cert, tls.key, tls.key_password_file))
    for index, entry in enumerate(tls.certificates, 1):
        password = entry.get("key_password_file")
        found.append(Pair(f"tls.certificates[{index}]", Path(entry["cert"]), Path(entry["key"]),
                          Path(password) if password else None, tuple(entry["names"])))
    return found


def watched_files(tls: TlsConfig) -> list[Path]:
    """Every file the TLS contexts are built from (what `tls.watch` looks at)."""
    files: list[Path] = []
    for pair in pairs(tls):
        files += [pair.cert, pair.key] + ([pair.password_file] if pair.password_file else [])
    if tls.client_ca is not None:
        files.append(tls.client_ca)
    return files


def file_stamps(files: list[Path]) -> tuple[tuple[int, int, int] | None, ...]:
    """(mtime, size, inode) of each file, None if missing: a change means reload."""
    stamps: list[tuple[int, int, int] | None] = []
    for path in files:
        try:
            st = os.stat(path)
        except OSError:
            stamps.append(None)
            continue
        stamps.append((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(stamps)


def _read_password(pair: Pair) -> bytes | None:
    if pair.password_file is None:
        return None
    try:
        return pair.password_file.read_bytes().rstrip(b"\r\n")
    except OSError as exc:
        raise TlsError(f"{pair.where}.key_password_file: cannot read {pair.password_file}: "
                       f"{exc.strerror}") from None


def _readable(where: str, path: Path) -> None:
    try:
        with open(path, "rb") as file:
            head = file.read(4096)
    except OSError as exc:
        raise TlsError(f"{where}: cannot read {path}: {exc.strerror}") from None
    if b"-----BEGIN" not in head:
        raise TlsError(f"{where}: {path} is not a PEM file")


def _decode(path: Path) -> dict[str, Any]:
    """The first certificate in `path`, decoded (expiry, names), by the stdlib's decoder."""
    decode = getattr(ssl._ssl, "_test_decode_cert", None)  # type: ignore[attr-defined]
    if decode is None:
        return {}
    try:
        return dict(decode(str(path)))
    except (ssl.SSLError, OSError, ValueError):
        return {}


def _check_certificate(pair: Pair, now: float) -> None:
    info = _decode(pair.cert)
    if not info:
        raise TlsError(f"{pair.where}.cert: {pair.cert} holds no readable certificate")
    not_after = info.get("notAfter")
    if not_after and ssl.cert_time_to_seconds(not_after) < now:
        raise TlsError(f"{pair.where}.cert: {pair.cert} expired on {not_after}")
    not_before = info.get("notBefore")
    if not_before and ssl.cert_time_to_seconds(not_before) > now + 86400:
        raise TlsError(f"{pair.where}.cert: {pair.cert} is not valid before {not_before}")
    dns = [value for kind, value in info.get("subjectAltName", ()) if kind in ("DNS",
                                                                                "IP Address")]
    for name in pair.names:
        if not any(name == cert_name.lower() or name_matches(cert_name, name)
                   for cert_name in dns):
            raise TlsError(f"{pair.where}.names: {name!r} is not among the names of "
                           f"{pair.cert} ({', '.join(dns) or 'none'})")


def _context(tls: TlsConfig, pair: Pair, now: float) -> ssl.SSLContext:
    for label, path in (("cert", pair.cert), ("key", pair.key)):
        _readable(f"{pair.where}.{label}", path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _VERSIONS[tls.min_version]
    context.options |= (ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
                        | ssl.OP_NO_RENEGOTIATION | ssl.OP_SINGLE_ECDH_USE)
    context.set_ciphers(tls.ciphers)  # checked by the setting's kind (CipherList)
    context.set_alpn_protocols(list(ALPN_PROTOCOLS))
    password = _read_password(pair)
    try:
        context.load_cert_chain(pair.cert, pair.key, password=password or b"")
    except ssl.SSLError as exc:
        reason = (exc.reason or str(exc)).lower()
        if "mismatch" in reason:
            raise TlsError(f"{pair.where}.key: {pair.key} does not match the certificate "
                           f"{pair.cert}") from None
        if password is not None or "bad decrypt" in reason:
            raise TlsError(f"{pair.where}.key: cannot decrypt {pair.key} (wrong or missing "
                           f"password: key_password_file)") from None
        raise TlsError(f"{pair.where}: cannot load {pair.cert} with {pair.key}: "
                       f"{reason}") from None
    except OSError as exc:
        raise TlsError(f"{pair.where}: cannot load {pair.cert}: {exc.strerror}") from None
    _check_certificate(pair, now)
    if tls.verify_client != "none":
        assert tls.client_ca is not None
        try:
            context.load_verify_locations(cafile=str(tls.client_ca))
        except (ssl.SSLError, OSError) as exc:
            raise TlsError(f"tls.client_ca: cannot load {tls.client_ca}: "
                           f"{getattr(exc, 'reason', None) or exc.strerror or exc}") from None
        context.verify_mode = _VERIFY[tls.verify_client]
    return context


def build_tls(config: Config, *, now: float | None = None) -> ssl.SSLContext | None:
    """The server context for `config.tls` (SNI entries installed), or None without
    HTTPS. Raises TlsError: one line naming the setting and the file."""
    tls = config.tls
    found = pairs(tls)
    if not tls.listen and not found:
        return None
    problem = contradiction(config)  # the loader refuses these first, naming the file
    if problem is not None:
        raise TlsError(str(problem))
    when = time.time() if now is None else now
    contexts = [(pair, _context(tls, pair, when)) for pair in found]
    default = contexts[0][1]
    named = [(pair.names, context) for pair, context in contexts[1:]]
    default.sni_callback = SniSelector(named)
    return default


def https_port(config: Config) -> int | None:
    """The port of the first HTTPS listener (for redirects), or None."""
    if not config.tls.listen:
        return None
    return parse_listen(config.tls.listen[0])[1]


# ---- HSTS and the plain-HTTP redirect: a wrapper around the application ----------------


class HttpsPolicy:
    """The app, plus `Strict-Transport-Security` on HTTPS responses (`hsts_max_age`) and,
    with `redirect_http`, a 308 to the https URL for every plain-HTTP request."""

    def __init__(self, app: Application, *, hsts_max_age: int, redirect_port: int | None
                 ) -> None:
        self.app = app
        self.hsts = (b"Strict-Transport-Security", b"max-age=%d" % hsts_max_age
                     ) if hsts_max_age else None
        self.redirect_port = redirect_port

    def open(self, request: Request) -> Dispatch:
        if request.scheme != "https":
            if self.redirect_port is not None:
                return _Fixed(redirect(request, self.redirect_port))
            return self.app.open(request)
        dispatch = self.app.open(request)
        return dispatch if self.hsts is None else _WithHeader(dispatch, self.hsts)


def redirect(request: Request, port: int) -> Response:
    host = (request.headers.get(b"host") or b"").decode("latin-1").strip()
    if host.startswith("["):
        name = host[:host.find("]") + 1] if "]" in host else ""
    else:
        name = host.partition(":")[0]
    if not name or any(c in name for c in "/\\@ \t"):
        name = "localhost"
    authority = name if port == 443 else f"{name}:{port}"
    target = request.path + (f"?{request.query}" if request.query else "")
    location = f"https://{authority}{target}".encode("latin-1")
    body = b"Permanent Redirect: " + location + b"\n"
    return Response(308, [(b"Location", location),
                          (b"Content-Type", b"text/plain; charset=utf-8")], body)


class _Fixed:
    __slots__ = ("response",)

    def __init__(self, response: Response) -> None:
        self.response = response

    def begin(self) -> Upload | Response | None:
        return self.response

    def respond(self) -> Response | Offload:
        return self.response

    def complete(self, response: Response) -> Response | Offload:
        return response


class _WithHeader:
    """A dispatch whose every response (inline or from the pool) gets one more field."""

    __slots__ = ("dispatch", "field")

    def __init__(self, dispatch: Dispatch, field: tuple[bytes, bytes]) -> None:
        self.dispatch = dispatch
        self.field = field

    def begin(self) -> Upload | Response | None:
        return self.dispatch.begin()  # a refusal comes back through `complete`

    def respond(self) -> Response | Offload:
        return self._after(self.dispatch.respond())

    def complete(self, response: Response) -> Response | Offload:
        return self._after(self.dispatch.complete(response))

    def _after(self, result: Response | Offload) -> Response | Offload:
        if isinstance(result, Offload):
            return Offload(self._in_worker, result)
        return self._add(result)

    def _in_worker(self, offload: Offload) -> Response | Offload:
        return self._after(offload.fn(*offload.args))

    def _add(self, response: Response) -> Response:
        # once: an app may hand out the same Response object to every request (appended
        # each time, the field piled up, one more per HTTPS request); a new list, so two
        # threads finishing that object at once cannot both add it
        if self.field not in response.headers:
            response.headers = [*response.headers, self.field]
        return response
