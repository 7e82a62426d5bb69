"""What a client chooses (charsets, JSON, cookies, filenames) never turns into a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from reactor import App, HTTPError, Request, Response
from reactor.app import request as request_module
from reactor.app.request import charset_of
from tests.conftest import RunningServer, fetch, on_loop, start_server


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[App, RunningServer]]:
    app = App()
    running = start_server(tmp_path)
    app.on_error = running.server.app_error  # a 500 is logged, so the log guard sees it
    on_loop(running, setattr, running.server.http, "app", app)
    yield app, running
    running.stop()


# ---- charsets -----------------------------------------------------------------------------

@pytest.mark.parametrize("charset", [
    "undefined",  # "".encode() raises UnicodeError, not LookupError
    "idna",  # refuses errors="replace"
    "punycode",  # raises on bytes >= 0x80 whatever the error handler
    "unicode_escape", "rot13", "base64", "no-such-charset", "\xfctf-8", "x" * 300, "",
])
def test_a_charset_that_is_no_usable_text_encoding_reads_as_utf8(
        served: tuple[App, RunningServer], charset: str) -> None:
    app, running = served

    @app.post("/form")
    def form(request: Request) -> dict:
        return {"form": request.form().items(), "text": request.text()}

    body = "a=\xff&b=é".encode("latin-1") + "&c=é".encode()
    status, _, raw = fetch(running, "POST", "/form", body, {
        "Content-Type": f"application/x-www-form-urlencoded; charset={charset}"})
    assert status == 200, raw
    assert json.loads(raw) == {"form": [["a", "\ufffd"], ["b", "\ufffd"], ["c", "é"]],
                               "text": "a=\ufffd&b=\ufffd&c=é"}


def test_a_usable_charset_is_honoured_and_each_verdict_is_cached_bounded(
        served: tuple[App, RunningServer]) -> None:
    app, running = served

    @app.post("/text")
    def text(request: Request) -> str:
        return request.text()

    for charset in ("latin-1", '"ISO-8859-1"', "cp1252"):
        status, _, raw = fetch(running, "POST", "/text", b"caf\xe9",
                               {"Content-Type": f"text/plain; charset={charset}"})
        assert (status, raw.decode()) == (200, "café"), charset
    assert charset_of(b"text/plain; charset=UTF-16") == "utf-16"
    # a client may send any number of names: the cache stays bounded
    for number in range(1000):
        assert charset_of(b"text/plain; charset=bogus-%d" % number) == "utf-8"
    assert len(request_module._CODECS) <= request_module._CODECS_MAX


def test_a_forms_percent_escapes_are_bytes_in_its_charset(
        served: tuple[App, RunningServer]) -> None:
    """Apache HttpClient's UrlEncodedFormEntity (ISO-8859-1 by default) sends "José" as
    Jos%E9 under `charset=ISO-8859-1`: the escape is read in that charset, as Django does."""
    app, running = served

    @app.post("/form")
    def form(request: Request) -> dict:
        return {"form": request.form().items()}

    for content_type, body, expected in [
        ("application/x-www-form-urlencoded; charset=ISO-8859-1", b"name=Jos%E9&raw=\xe9+x",
         [["name", "José"], ["raw", "é x"]]),
        ("application/x-www-form-urlencoded; charset=cp1252", b"e=%80", [["e", "€"]]),
        ("application/x-www-form-urlencoded", b"u=caf%C3%A9&bad=%E9", [["u", "café"],
                                                                       ["bad", "\ufffd"]]),
    ]:
        status, _, raw = fetch(running, "POST", "/form", body, {"Content-Type": content_type})
        assert (status, json.loads(raw)["form"]) == (200, expected), content_type


def test_a_multipart_text_field_is_read_in_its_parts_charset_else_the_forms(
        served: tuple[App, RunningServer]) -> None:
    """Apache HttpClient's MultipartEntityBuilder.addTextBody sends "José" as Jos\\xe9 in a
    part of `Content-Type: text/plain; charset=ISO-8859-1` (its default), or, with
    setCharset, names the charset on the whole form, as Django reads it (RFC 7578 4.4)."""
    app, running = served

    @app.post("/form")
    def form(request: Request) -> dict:
        return {"form": request.form().items()}

    def part(name: str, data: bytes, content_type: str | None = None) -> bytes:
        head = f'--b\r\nContent-Disposition: form-data; name="{name}"\r\n'
        if content_type is not None:
            head += f"Content-Type: {content_type}\r\n"
        return head.encode() + b"\r\n" + data + b"\r\n"

    body = (part("latin", b"Jos\xe9", "text/plain; charset=ISO-8859-1")
            + part("cp1252", b"\x80", 'text/plain; charset="windows-1252"')
            + part("utf8", "José".encode(), "text/plain; charset=UTF-8")
            + part("plain", "José".encode())
            + part("bogus", "José".encode(), "text/plain; charset=no-such") + b"--b--\r\n")
    status, _, raw = fetch(running, "POST", "/form", body,
                           {"Content-Type": "multipart/form-data; boundary=b"})
    assert (status, json.loads(raw)["form"]) == (200, [
        ["latin", "José"], ["cp1252", "€"], ["utf8", "José"], ["plain", "José"],
        ["bogus", "José"]])
    body = part("form", b"Jos\xe9") + part("own", "é".encode(), "text/plain; charset=utf-8")
    status, _, raw = fetch(running, "POST", "/form", body + b"--b--\r\n", {
        "Content-Type": "multipart/form-data; boundary=b; charset=ISO-8859-1"})
    assert (status, json.loads(raw)["form"]) == (200, [["form", "José"], ["own", "é"]])


def test_a_form_of_many_parts_with_huge_headers_is_a_400(
        served: tuple[App, RunningServer]) -> None:
    app, running = served

    @app.post("/form")
    def form(request: Request) -> dict:
        return {"fields": len(request.form().get_all("a"))}

    part = b'--b\r\nContent-Disposition: form-data; name="a"' + b";" * 2000 + b"\r\n\r\nv\r\n"
    status, _, raw = fetch(running, "POST", "/form", part * 200 + b"--b--\r\n",
                           {"Content-Type": "multipart/form-data; boundary=b"})
    assert (status, raw) == (400, b"Bad Request: part headers too large\n")
    status, _, raw = fetch(running, "POST", "/form", part * 100 + b"--b--\r\n",
                           {"Content-Type": "multipart/form-data; boundary=b"})
    assert (status, json.loads(raw)) == (200, {"fields": 100})


# ---- Set-Cookie attributes ----------------------------------------------------------------

@pytest.mark.parametrize(("attribute", "kwargs"), [
    ("path", {"path": "/a; HttpOnly"}),
    ("path", {"path": "/a\x7f"}),
    ("path", {"path": "/caf\xe9"}),
    ("domain", {"domain": "x.com; Secure"}),
    ("domain", {"domain": "x .com"}),
    ("domain", {"domain": "-x.com"}),
    ("domain", {"domain": "x..com"}),
    ("expires", {"expires": "Thu, 01 Jan 1970 00:00:00 GMT; Domain=evil"}),
    ("expires", {"expires": "tomorrow"}),
    ("expires", {"expires": True}),
    ("samesite", {"samesite": "Lax; Secure"}),
    ("samesite", {"samesite": "sometimes"}),
])
def test_a_cookie_attribute_that_would_inject_or_is_invalid_raises_naming_it(
        attribute: str, kwargs: dict) -> None:
    with pytest.raises(ValueError, match=f"cookie {attribute}"):
        Response().set_cookie("n", "v", **kwargs)


def test_cookie_attributes_that_are_valid_are_sent_and_samesite_none_is_always_secure() -> None:
    def cookie(**kwargs: object) -> bytes:
        response = Response().set_cookie("n", "v", **kwargs)  # type: ignore[arg-type]
        return response.headers[-1][1]

    # normalised before deciding on Secure: browsers drop SameSite=None without it
    for spelling in ("none", "None", "NONE"):
        assert cookie(samesite=spelling) == b"n=v; Path=/; Secure; SameSite=None"
    assert cookie(samesite="strict") == b"n=v; Path=/; SameSite=Strict"
    assert cookie(domain=".Example.co.uk", path="/a b/%3B", samesite=None) == (
        b"n=v; Domain=.Example.co.uk; Path=/a b/%3B")
    moment = datetime(2030, 5, 17, 8, 9, 10, tzinfo=UTC)
    expected = b"n=v; Expires=Fri, 17 May 2030 08:09:10 GMT; Path=/; SameSite=Lax"
    assert cookie(expires=moment) == expected
    assert cookie(expires=moment.replace(tzinfo=None)) == expected  # naive is UTC
    assert cookie(expires=moment.astimezone(timezone(timedelta(hours=-5)))) == expected
    assert cookie(expires=moment.timestamp()) == expected
    assert cookie(expires=int(moment.timestamp())) == expected
    assert cookie(expires="Fri, 17 May 2030 08:09:10 GMT") == expected
    assert Response().delete_cookie("n").headers[-1][1] == (
        b"n=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/; SameSite=Lax")


def test_a_cookie_max_age_may_be_a_timedelta_as_in_werkzeug() -> None:
    """`set_cookie("sid", v, max_age=timedelta(days=7))`, Flask's spelling, was a
    TypeError (a logged 500 on every request that set it)."""
    header = Response().set_cookie("n", "v", max_age=timedelta(days=7, seconds=0.9))
    assert header.headers[-1][1] == b"n=v; Max-Age=604800; Path=/; SameSite=Lax"
    assert Response().set_cookie("n", "v", max_age=60).headers[-1][1] == (
        b"n=v; Max-Age=60; Path=/; SameSite=Lax")


def test_a_secure_prefixed_cookie_is_always_secure_so_that_deleting_it_works() -> None:
    """`delete_cookie("__Host-sid")` sent `__Host-sid=; Max-Age=0; ...` without Secure, a
    Set-Cookie browsers ignore entirely (RFC 6265bis 4.1.3): logging out left the session
    cookie in place, and delete_cookie took no `secure` to say it."""
    assert Response().delete_cookie("__Host-sid").headers[-1][1] == (
        b"__Host-sid=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/; Secure;"
        b" SameSite=Lax")
    assert b"; Secure" in Response().delete_cookie("__secure-id").headers[-1][1]
    assert b"; Secure" in Response().set_cookie("__Secure-id", "v").headers[-1][1]
    assert b"; Secure" in Response().delete_cookie("sid", secure=True).headers[-1][1]
    assert b"Secure" not in Response().delete_cookie("__Hostile").headers[-1][1]


# ---- JSON -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "reason"), [
    (b"NaN", b"the body's JSON has NaN, which JSON does not allow"),
    (b"[1, Infinity]", b"the body's JSON has Infinity, which JSON does not allow"),
    (b'{"x": -Infinity}', b"the body's JSON has -Infinity, which JSON does not allow"),
    (b"1e999999", b"the body's JSON has a number out of range"),
    (b"[-1.5e400]", b"the body's JSON has a number out of range"),
])
def test_json_that_python_takes_but_json_has_not_is_a_400_not_a_500(
        served: tuple[App, RunningServer], body: bytes, reason: bytes) -> None:
    app, running = served

    @app.post("/echo")
    def echo(request: Request) -> object:
        return {"got": request.json()}  # Response.json would refuse NaN/inf: a 500

    status, _, raw = fetch(running, "POST", "/echo", body,
                           {"Content-Type": "application/json"})
    assert (status, raw) == (400, b"Bad Request: " + reason + b"\n")
    status, _, raw = fetch(running, "POST", "/echo", b"[1e308, -0.5, 1E-400]",
                           {"Content-Type": "application/json"})
    assert (status, json.loads(raw)) == (200, {"got": [1e308, -0.5, 0.0]})


def test_a_lone_surrogate_a_client_sent_round_trips_as_an_ascii_escape(
        served: tuple[App, RunningServer]) -> None:
    app, running = served

    @app.post("/echo")
    def echo(request: Request) -> object:
        return {"got": request.json()}

    status, _, raw = fetch(running, "POST", "/echo", b'["\\ud800", "\\u00e9"]',
                           {"Content-Type": "application/json"})
    # valid UTF-8 JSON; the whole body escaped only because it had to be
    assert (status, raw) == (200, b'{"got":["\\ud800","\\u00e9"]}')
    assert json.loads(raw) == {"got": ["\ud800", "é"]}
    assert Response.json(["é"]).body == '["é"]'.encode()  # the common case stays UTF-8


def test_an_http_error_naming_a_clients_lone_surrogate_keeps_its_status(
        served: tuple[App, RunningServer]) -> None:
    """`raise HTTPError(400, f"unknown key {key}")` with a key from the client's JSON
    ("\\ud800" is valid JSON) answered a 500 and logged a traceback: UTF-8 cannot carry the
    surrogate. The 400 goes out, the surrogate replaced."""
    app, running = served

    @app.post("/keys")
    def keys(request: Request) -> object:
        raise HTTPError(400, f"unknown key {request.json()['k']}")

    status, _, raw = fetch(running, "POST", "/keys", b'{"k": "a\\ud800\\u00e9"}',
                           {"Content-Type": "application/json"})
    assert (status, raw.decode()) == (400, "Bad Request: unknown key a?é\n")


# ---- multipart filenames and cookies: what browsers send, decoded --------------------------

@pytest.mark.parametrize(("disposition", "expected"), [
    ("filename*=UTF-8'en'%E2%82%AC.txt", "€.txt"),  # a language tag
    ("filename*=iso-8859-1''%A3.txt", "£.txt"),
    ("filename*=utf-8''%E2%82%AC%20rate.txt", "€ rate.txt"),
    ('filename="fallback.txt"; filename*=UTF-8\'\'na%C3%AFve.txt', "naïve.txt"),  # * wins
    ('filename*=UTF-8\'\'..%2F..%2Fetc%2Fpasswd', "passwd"),  # decoded, then no directory
    ('filename="plain.txt"; filename*=koi8-r\'\'%C1.txt', "plain.txt"),  # not UTF-8/latin-1
    ("filename*=%E2%82%AC.txt", "%E2%82%AC.txt"),  # no ext-value, nothing else: as sent
    ('filename="utf-8\'\'%41.txt"', "utf-8''%41.txt"),  # a plain filename is not decoded
])
def test_a_multipart_filename_star_is_decoded_as_an_rfc_8187_ext_value(
        served: tuple[App, RunningServer], disposition: str, expected: str) -> None:
    app, running = served

    @app.post("/upload")
    def upload(request: Request) -> dict:
        part = request.form().files["doc"]
        return {"filename": part.filename, "content": part.read().decode()}

    body = (f"--b\r\nContent-Disposition: form-data; name=\"doc\"; {disposition}\r\n\r\n"
            "data\r\n--b--\r\n").encode()
    status, _, raw = fetch(running, "POST", "/upload", body,
                           {"Content-Type": "multipart/form-data; boundary=b"})
    assert (status, json.loads(raw)) == (200, {"filename": expected, "content": "data"})


@pytest.mark.parametrize(("name", "filename", "expected"), [
    ("caf\u00e9".encode(), "r\u00e9sum\u00e9.txt".encode(), ("caf\u00e9", "r\u00e9sum\u00e9.txt")),
    # a windows-1252 page's form (or Apache HttpClient's browser-compatible mode) sends its
    # 8-bit charset: read as latin-1, not "Jos\ufffd.txt"
    (b"caf\xe9", b"Jos\xe9.txt", ("caf\u00e9", "Jos\u00e9.txt")),
])
def test_multipart_names_are_utf8_and_latin1_only_when_not_valid_utf8(
        served: tuple[App, RunningServer], name: bytes, filename: bytes,
        expected: tuple[str, str]) -> None:
    app, running = served

    @app.post("/names")
    def names(request: Request) -> dict:
        [(field, part)] = request.form().files.items()
        return {"field": field, "filename": part.filename}

    body = (b'--b\r\nContent-Disposition: form-data; name="' + name + b'"; filename="'
            + filename + b'"\r\n\r\ndata\r\n--b--\r\n')
    status, _, raw = fetch(running, "POST", "/names", body,
                           {"Content-Type": "multipart/form-data; boundary=b"})
    assert (status, json.loads(raw)) == (200, {"field": expected[0], "filename": expected[1]})


def test_cookie_values_are_utf8_and_latin1_only_when_not_valid_utf8(
        served: tuple[App, RunningServer]) -> None:
    app, running = served

    @app.get("/cookies")
    def cookies(request: Request) -> dict:
        return request.cookies

    def raw(text: str, encoding: str = "utf-8") -> str:
        return text.encode(encoding).decode("latin-1")  # http.client sends str as latin-1

    header = "; ".join([raw("name=café"), raw('quoted="à"'), raw("old=café", "latin-1"),
                        raw("ü=1"), "plain=v"])
    status, _, body = fetch(running, "GET", "/cookies", headers={"Cookie": header})
    # "à" is C3 A0 in UTF-8: no strip may take the A0 (a latin-1 no-break space)
    assert (status, json.loads(body)) == (200, {"name": "café", "quoted": "à", "old": "café",
                                                "ü": "1", "plain": "v"})
