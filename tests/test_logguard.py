"""The error-log guard (tests/logguard.py, hooked in tests/conftest.py): an undeclared
warning/error line fails the test that caused it; a declared one passes; a declared line that
never comes fails too."""

from __future__ import annotations

from pathlib import Path

import pytest

from reactor.ops.logging import ServerLog
from tests.logguard import is_failure, parse_error_log

INNER_TESTS = '''
import pytest

from tests.conftest import expect_log, fetch, on_loop


def boom(request):
    raise RuntimeError("inner boom")


def serve_boom(running):
    on_loop(running, lambda: running.server.app.router.get("/boom", boom))
    assert fetch(running, "GET", "/boom")[0] == 500


def test_undeclared_handler_error(running_server):
    serve_boom(running_server)


@pytest.mark.expect_log("handler-error")
def test_marker_declares_it(running_server):
    serve_boom(running_server)


def test_block_declares_it(running_server):
    with expect_log(running_server, "handler-error", path="/boom"):
        serve_boom(running_server)


def test_block_for_other_fields_does_not_cover_it(running_server):
    with expect_log(running_server, "handler-error", path="/other", required=False):
        serve_boom(running_server)


@pytest.mark.expect_log("reload-failed")
def test_declared_but_never_logged(running_server):
    assert fetch(running_server, "GET", "/echo/x")[0] == 200


def test_info_lines_never_fail(running_server):
    assert fetch(running_server, "GET", "/echo/x")[0] == 200


def test_block_fails_when_its_line_never_comes(running_server):
    with pytest.raises(AssertionError, match="no such line"):
        with expect_log(running_server, "handler-error", timeout=0.2):
            pass
'''


def test_guard_fails_undeclared_lines_and_passes_declared_ones(pytester: pytest.Pytester) -> None:
    pytester.makeconftest('pytest_plugins = ["tests.conftest"]')
    pytester.makepyfile(test_inner=INNER_TESTS)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-rE")
    # pytest counts a test whose teardown fails as passed (its call did) and as an error
    result.assert_outcomes(passed=7, errors=3)
    errors = sorted(line.split(" ")[1] for line in result.outlines if line.startswith("ERROR "))
    assert errors == [
        "test_inner.py::test_block_for_other_fields_does_not_cover_it",
        "test_inner.py::test_declared_but_never_logged",
        "test_inner.py::test_undeclared_handler_error",
    ]
    # The report sections only: the short summary repeats messages, in full when CI is set.
    output = result.stdout.str().split("short test summary info")[0]
    assert output.count("error-log lines the test did not declare") == 2
    assert output.count('"event": "handler-error"') == 2 and "inner boom" in output
    assert "declared error-log lines that were never logged:" in output
    assert "@pytest.mark.expect_log(event='reload-failed')" in output


def test_console_lines_and_bare_tracebacks_are_read_too(tmp_path: Path) -> None:
    log = ServerLog(access="off", error=str(tmp_path / "error.log"), fmt="console")
    log.info("listening", port=1)
    log.warning("files-disabled", message="no files directory")
    try:
        raise ValueError("console boom")
    except ValueError as exc:
        log.error("handler-error", exc, {"path": "/x"})
    log.close()
    text = (tmp_path / "error.log").read_text()
    text += '{"level":"info","event":"stopped"}\n'  # a JSON line ends the traceback above
    # what a crashed `reactor serve` leaves on stderr
    text += "Traceback (most recent call last):\n  File \"x.py\", line 1\nOSError: bare\n"
    text += "reactor: a plain line\n"
    entries = parse_error_log(text)
    assert [(e["level"], e["event"]) for e in entries] == [
        ("info", "listening"), ("warning", "files-disabled"), ("error", "handler-error"),
        ("info", "stopped"), (None, None), (None, None)]
    assert "ValueError: console boom" in entries[2]["exception"]
    assert "OSError: bare" in entries[4]["exception"]
    assert entries[5] == {"level": None, "event": None, "text": "reactor: a plain line"}
    assert [is_failure(e) for e in entries] == [False, True, True, False, True, False]
