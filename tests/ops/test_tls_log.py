"""Access-log fields of HTTPS requests: `scheme` on every line, the TLS facts on HTTPS ones,
rendered the same by the fast path and the generic one."""

from __future__ import annotations

from reactor.app.types import Headers, Request, Response
from reactor.conn.shared import AccessRecord
from reactor.ops.logging import record_fields
from tests.ops.test_logging import render

TLS_INFO = {"scheme": "https", "tls_version": "TLSv1.3", "tls_cipher": "TLS_AES_128_GCM_SHA256",
            "sni": "api.example.org", "alpn": "http/1.1"}


def record(scheme: str, info: dict) -> AccessRecord:
    request = Request("GET", "/x", "", "1.1", Headers([]), remote_addr="127.0.0.1",
                      remote_port=1, request_id="r-1", scheme=scheme, conn_info=info)
    return AccessRecord(request, Response(200), 1, 10, 0, None)


def test_plain_lines_say_http_and_carry_no_tls_fields() -> None:
    line = render({"record": record("http", {})})
    assert line["scheme"] == "http"
    assert not [key for key in line if key.startswith("tls_") or key == "sni"]


def test_https_lines_carry_version_cipher_and_sni() -> None:
    line = render({"record": record("https", TLS_INFO)})
    assert (line["scheme"], line["tls_version"], line["tls_cipher"], line["sni"]) == (
        "https", "TLSv1.3", "TLS_AES_128_GCM_SHA256", "api.example.org")
    assert "tls_client_subject" not in line and "alpn" not in line


def test_client_subject_and_a_missing_sni_render_alike_on_both_paths() -> None:
    info = dict(TLS_INFO, sni=None, tls_client_subject='CN=a "quoted" name,O=Org')
    fast = render({"record": record("https", info)})
    generic = render(record_fields(record("https", info)))
    fast.pop("ts")
    generic.pop("ts")
    assert fast == generic
    assert fast["sni"] is None and fast["tls_client_subject"] == 'CN=a "quoted" name,O=Org'
