"""testssl.sh against a real HTTPS listener: protocols, ciphers, known TLS vulnerabilities.

About 40 s, so it runs in `make conformance` (REACTOR_TESTSSL=1), not `make test`; it skips
with the reason when testssl.sh (Debian package testssl.sh) is not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conn.tlskit import Certs, tls_port, tls_server

TESTSSL = shutil.which("testssl") or shutil.which("testssl.sh")

pytestmark = [
    pytest.mark.skipif(os.environ.get("REACTOR_TESTSSL") != "1",
                       reason="testssl.sh takes ~40 s: run by `make conformance`"),
    pytest.mark.skipif(TESTSSL is None, reason="testssl.sh is not installed "
                       "(apt-get install testssl.sh; `make conformance` does it as root)"),
]

# Findings about the throw-away test certificate (its own CA, valid for centuries, no CRL or
# OCSP URL, no CAA record) and about response headers an app chooses (X-Frame-Options and
# the like): not the server's TLS.
ABOUT_THE_TEST_CERTIFICATE = {"cert_chain_of_trust", "cert_validityPeriod", "cert_revocation",
                              "DNS_CAArecord", "security_headers"}
MUST_BE_OK = ("SSLv3", "TLS1_2", "TLS1_3", "cipherlist_NULL", "cipherlist_aNULL",
              "cipherlist_EXPORT", "cipherlist_LOW", "cipherlist_STRONG", "heartbleed",
              "secure_client_renego", "CRIME_TLS", "fallback_SCSV", "LUCKY13", "HSTS_time")


def test_testssl_finds_nothing_wrong_with_the_default_tls_settings(tmp_path: Path,
                                                                    certs: Certs) -> None:
    running = tls_server(tmp_path, certs, tls={"hsts_max_age": 31536000})
    report = tmp_path / "testssl.json"
    try:
        assert TESTSSL is not None
        done = subprocess.run(
            [TESTSSL, "--quiet", "--color", "0", "--warnings", "off", "--fast",
             "--jsonfile", str(report), f"127.0.0.1:{tls_port(running)}"],
            capture_output=True, text=True, timeout=600, check=False)
    finally:
        running.stop()
    assert report.exists(), done.stdout[-2000:] + done.stderr[-2000:]
    findings = {item["id"]: item for item in json.loads(report.read_text())}
    bad = {id_: f"{item['severity']}: {item['finding']}" for id_, item in findings.items()
           if item["severity"] in ("MEDIUM", "HIGH", "CRITICAL")
           and id_ not in ABOUT_THE_TEST_CERTIFICATE}
    assert bad == {}
    for id_ in MUST_BE_OK:
        assert findings[id_]["severity"] == "OK", (id_, findings[id_])
    for id_ in ("TLS1", "TLS1_1", "cipherlist_AVERAGE", "cipherlist_3DES_IDEA"):
        assert findings[id_]["finding"] == "not offered", (id_, findings[id_])
