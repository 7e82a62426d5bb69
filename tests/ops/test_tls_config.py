"""The [tls] settings: check-config names the wrong file in one line, the CLI flags, a real
`reactor serve --tls-port --cert --key`, and a start-up refused with a broken pair."""

from __future__ import annotations

import datetime
import io
import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from reactor.cli import build_parser
from reactor.ops.config import ConfigError, load_config, run_check_config
from tests.conn.tlskit import Certs
from tests.ops.serverproc import (
    ServeProcess,
    base_config,
    reactor_argv,
    server_env,
    toml_value,
    wait_until,
    write_config,
)


def check(tmp_path: Path, tls: dict, **sections: dict) -> tuple[int, str, str]:
    """`reactor check-config` on a file with this [tls] section: (code, stdout, stderr)."""
    tls = dict(tls)
    tables = tls.pop("certificates", [])
    config = write_config(tmp_path / "reactor.toml", {"tls": tls, **sections})
    with config.open("a") as file:  # [[tls.certificates]] tables
        for table in tables:
            file.write("\n[[tls.certificates]]\n" + "".join(
                f"{key} = {toml_value(value)}\n" for key, value in table.items()))
    args = build_parser().parse_args(["check-config", "--config", str(config)])
    out, err = io.StringIO(), io.StringIO()
    code = run_check_config(args, {}, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_check_config_accepts_good_pairs_with_sni_entries(tmp_path: Path,
                                                          certs: Certs) -> None:
    cert, key = certs.issue("main", "localhost")
    a_cert, a_key = certs.issue("a", "a.example", "*.a.example")
    code, out, err = check(tmp_path, {
        "listen": ["127.0.0.1:8443"], "cert": str(cert), "key": str(key),
        "certificates": [{"names": ["a.example", "*.a.example"], "cert": str(a_cert),
                          "key": str(a_key)}]})
    assert (code, err) == (0, "") and "test is successful" in out


def test_check_config_names_a_key_that_does_not_match(tmp_path: Path, certs: Certs) -> None:
    cert, _ = certs.issue("main", "localhost")
    _, other_key = certs.issue("other", "localhost")
    code, _, err = check(tmp_path, {"listen": ["127.0.0.1:8443"], "cert": str(cert),
                                    "key": str(other_key)})
    assert code == 2 and err.count("\n") == 1
    assert err == (f"reactor: tls.key: {other_key} does not match the certificate {cert}\n")


def test_check_config_names_an_expired_certificate(tmp_path: Path, certs: Certs) -> None:
    past = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    cert, key = certs.issue("old", "localhost", not_before=past - datetime.timedelta(days=30),
                            not_after=past)
    code, _, err = check(tmp_path, {"listen": ["127.0.0.1:8443"], "cert": str(cert),
                                    "key": str(key)})
    assert code == 2 and err.startswith(f"reactor: tls.cert: {cert} expired on ")


def test_check_config_names_an_sni_name_the_certificate_lacks(tmp_path: Path,
                                                              certs: Certs) -> None:
    cert, key = certs.issue("main", "localhost")
    a_cert, a_key = certs.issue("a", "a.example")
    code, _, err = check(tmp_path, {
        "listen": ["127.0.0.1:8443"], "cert": str(cert), "key": str(key),
        "certificates": [{"names": ["a.example", "b.example"], "cert": str(a_cert),
                          "key": str(a_key)}]})
    assert code == 2
    assert err == (f"reactor: tls.certificates[1].names: 'b.example' is not among the names "
                   f"of {a_cert} (a.example)\n")


@pytest.mark.parametrize(("change", "expected"), [
    ({"cert": "missing.pem"}, "tls.cert: cannot read {dir}/missing.pem: No such file"),
    ({"key_password_file": "pass.txt"}, "tls.key: cannot decrypt {key}"),
    ({"verify_client": "required"}, "tls.client_ca: verify_client = 'required' needs"),
    ({"cert": None}, "tls: cert and key go together"),
])
def test_check_config_one_line_reasons(tmp_path: Path, certs: Certs, change: dict,
                                       expected: str) -> None:
    cert, key = certs.issue("main", "localhost", password=b"right")
    (tmp_path / "pass.txt").write_text("wrong\n")
    tls = {"listen": ["127.0.0.1:8443"], "cert": str(cert), "key": str(key)}
    tls.update(change)
    tls = {k: v for k, v in tls.items() if v is not None}
    if "key_password_file" not in change:
        (tmp_path / "pass.txt").write_text("right\n")
        tls["key_password_file"] = "pass.txt"
    code, _, err = check(tmp_path, tls)
    assert code == 2 and err.count("\n") == 1
    assert expected.format(dir=tmp_path, key=key) in err


def test_check_config_refuses_an_address_in_both_listen_lists(tmp_path: Path,
                                                              certs: Certs) -> None:
    cert, key = certs.issue("main", "localhost")
    code, _, err = check(tmp_path, {"listen": ["127.0.0.1:8080"], "cert": str(cert),
                                    "key": str(key)}, server={"listen": ["127.0.0.1:8080"]})
    assert code == 2 and "tls.listen: 127.0.0.1:8080 is also in server.listen" in err
    code, _, err = check(tmp_path, {"listen": ["[::1]:8443"], "cert": str(cert),
                                    "key": str(key)}, server={"listen": ["[0::1]:08443"]})
    assert code == 2 and "tls.listen: [::1]:8443 is also in server.listen" in err


def test_contradicting_tls_settings_name_the_file_and_line(tmp_path: Path) -> None:
    """tls.listen without a certificate (and the other [tls] contradictions) are refused like
    any bad value: the file and the line of the setting that makes it one, the env variable
    or the flag."""
    path = tmp_path / "reactor.toml"
    path.write_text('[server]\nbacklog = 5\n\n[tls]\nlisten = ["127.0.0.1:8443"]\n')
    code, _, err = check_file(path)
    assert (code, err) == (2, f"reactor: {path}:5: tls.cert: tls.listen is set, so tls.cert"
                              " and tls.key (the default certificate) must be too\n")
    path.write_text('[tls]\nkey = "k.pem"\nverify_client = "optional"\n')
    assert check_file(path)[2] == (
        f"reactor: {path}:2: tls: cert and key go together; set both (or neither)\n")
    path.write_text('[tls]\n\nverify_client = "optional"\n')
    assert check_file(path)[2].startswith(
        f"reactor: {path}:3: tls.client_ca: verify_client = 'optional' needs the CA file")
    path.write_text("[server]\nbacklog = 5\n")
    code, _, err = check_file(path, {"REACTOR_TLS_LISTEN": "127.0.0.1:8443"})
    assert (code, err) == (2, "reactor: environment REACTOR_TLS_LISTEN: tls.cert: tls.listen"
                              " is set, so tls.cert and tls.key (the default certificate)"
                              " must be too\n")
    with pytest.raises(ConfigError) as raised:
        load_config(build_parser().parse_args(["serve", "--no-config", "--tls-port", "8443"]),
                    {}, cwd=str(tmp_path))
    assert str(raised.value) == ("command line --tls-port: tls.cert: tls.listen is set, so"
                                 " tls.cert and tls.key (the default certificate) must be too")


def check_file(path: Path, environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    args = build_parser().parse_args(["check-config", "--config", str(path)])
    out, err = io.StringIO(), io.StringIO()
    code = run_check_config(args, environ or {}, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_tls_port_flag_serves_next_to_the_plain_port(tmp_path: Path) -> None:
    parse = build_parser().parse_args
    config = load_config(parse(["serve", "--no-config", "--tls-port", "8443", "--cert", "c.pem",
                                "--key", "k.pem"]), {}, cwd=str(tmp_path))
    assert config.tls.listen == ("127.0.0.1:8443",)
    assert config.tls.cert == tmp_path / "c.pem" and config.tls.key == tmp_path / "k.pem"
    config = load_config(parse(["serve", "--no-config", "--host", "::1", "--tls-port", "443",
                                "--cert", "c.pem", "--key", "k.pem"]), {}, cwd=str(tmp_path))
    assert config.tls.listen == ("[::1]:443",)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_reactor_serve_with_tls_flags_answers_https(tmp_path: Path, certs: Certs) -> None:
    cert, key = certs.issue("main", "localhost")
    process = ServeProcess(["--no-config", "--port", "0", "--tls-port", "0", "--cert",
                            str(cert), "--key", str(key), "--log", "off"], cwd=tmp_path)
    try:
        lines = wait_until(lambda: len(process.events("listening")) >= 2 and
                           process.events("listening"))
        https_port = next(int(line["port"]) for line in lines
                          if line["url"].startswith("https://"))
        done = subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert",
                               str(certs.ca_file), f"https://localhost:{https_port}/echo/hi"],
                              capture_output=True, timeout=30)
        assert done.stdout == b"hi", done.stderr
    finally:
        process.stop()


def test_serve_refuses_to_start_with_a_broken_pair(tmp_path: Path, certs: Certs) -> None:
    cert, _ = certs.issue("main", "localhost")
    _, other_key = certs.issue("other", "localhost")
    config = write_config(tmp_path / "reactor.toml", base_config(
        tmp_path, tls={"listen": ["localhost:0"], "cert": str(cert), "key": str(other_key)}))
    done = subprocess.run(reactor_argv("--config", str(config)), cwd=tmp_path,
                          env=server_env(), capture_output=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.decode() == (f"reactor: tls.key: {other_key} does not match the "
                                    f"certificate {cert}\n")


def test_the_readme_https_configuration_checks_out(tmp_path: Path, certs: Certs) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## HTTPS"):]
    block = section[section.index("```toml\n") + 8:]
    text = block[:block.index("```")]
    pairs = {"fullchain.pem": certs.issue("main", "example.org"),
             "api.pem": certs.issue("api", "api.example.org"),
             "internal.pem": certs.issue("internal", "*.internal.example.org")}
    for name, (cert, key) in pairs.items():
        text = text.replace(f"/etc/reactor/tls/{name}", str(cert))
        key_name = "privkey.pem" if name == "fullchain.pem" else name.replace(".pem", ".key")
        text = text.replace(f"/etc/reactor/tls/{key_name}", str(key))
    assert not [line for line in text.splitlines() if "/etc/reactor" in line.split("#")[0]]
    config = tmp_path / "reactor.toml"
    config.write_text(text)
    args = build_parser().parse_args(["check-config", "--config", str(config)])
    err = io.StringIO()
    assert run_check_config(args, {}, stdout=io.StringIO(), stderr=err) == 0, err.getvalue()


def test_sni_certificates_from_the_environment_are_json(tmp_path: Path, certs: Certs) -> None:
    """REACTOR_TLS_CERTIFICATES is in the settings table like the other table settings'
    variables, but any value was refused as 'must be a list of tables, got "[...]"': the
    JSON was never parsed. Served here by a real `reactor serve`, chosen by SNI."""
    cert, key = certs.issue("main", "localhost")
    api_cert, api_key = certs.issue("api", "api.example.org")
    tables = f'[{{"names": ["api.example.org"], "cert": "{api_cert}", "key": "{api_key}"}}]'
    environ = {"REACTOR_TLS_CERTIFICATES": tables}
    config = write_config(tmp_path / "reactor.toml", base_config(
        tmp_path, tls={"listen": ["127.0.0.1:0"], "cert": str(cert), "key": str(key)}))
    code, out, err = check_file(config, environ)
    assert (code, err) == (0, "") and "test is successful" in out
    assert load_config(build_parser().parse_args(["serve", "--config", str(config)]),
                       environ).tls.certificates == (
        {"names": ("api.example.org",), "cert": str(api_cert), "key": str(api_key),
         "key_password_file": None},)
    bad = {"REACTOR_TLS_CERTIFICATES": "[{names: 1}]"}
    code, _, err = check_file(config, bad)
    assert code == 2 and err.startswith(
        "reactor: environment REACTOR_TLS_CERTIFICATES: tls.certificates: must be JSON (")
    process = ServeProcess(["--config", str(config)], cwd=tmp_path, env=server_env(**environ))
    try:
        lines = wait_until(lambda: len(process.events("listening")) >= 2 and
                           process.events("listening"))
        port = next(int(line["port"]) for line in lines if line["url"].startswith("https://"))
        context = ssl.create_default_context(cafile=str(certs.ca_file))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname="api.example.org") as tls:
            names = [value for kind, value in tls.getpeercert()["subjectAltName"]]
        assert names == ["api.example.org"]
    finally:
        process.stop()


def test_hsts_is_not_piled_onto_a_response_the_app_returns_every_time() -> None:
    """A handler returning one module-level Response got one more Strict-Transport-Security
    field per HTTPS request: the field went into the app's own object, which grew without
    end (and every answer carried all the copies)."""
    from reactor import App, Response
    from reactor.app.types import Headers, Request
    from reactor.ops.tls import HttpsPolicy

    app = App()
    shared = Response(204)
    app.get("/ok", inline=True)(lambda request: shared)
    policy = HttpsPolicy(app, hsts_max_age=60, redirect_port=None)
    for _ in range(3):
        request = Request("GET", "/ok", "", "1.1", Headers([(b"host", b"example.test")]),
                          scheme="https")
        response = policy.open(request).respond()
        assert isinstance(response, Response)
        assert [value for name, value in response.headers
                if name == b"Strict-Transport-Security"] == [b"max-age=60"]
    assert shared.headers == [(b"Strict-Transport-Security", b"max-age=60")]  # once
