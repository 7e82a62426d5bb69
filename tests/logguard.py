"""The error-log guard: after each test, every warning/error line of the servers it started
must have been declared with `expect_log` (tornado's `ExpectLog` idea, for log files).

A test starts servers through `tests.conftest.start_server` / `running_server` or
`tests.ops.serverproc.ServeProcess`; each registers itself with `track()`. The hooks in
tests/conftest.py open a `LogGuard` before the test's fixtures are set up and check it after
they are torn down (servers stopped, logs flushed), so the check sees every line. A server
belongs to the test that started it: the guard stops it when that test ends, so a server
fixture is function-scoped (a module-scoped one would be stopped under the next test).
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

# Levels reactor.ops.logging writes (structlog's method names) that a test must declare.
FAILING_LEVELS = frozenset({"warning", "warn", "error", "critical", "exception", "fatal"})
WAIT_S = 10.0

# structlog's ConsoleRenderer (the error log on a terminal, or `format = "console"`):
# "<ts> [warning  ] files-disabled   key=value", then any traceback on the following lines.
_CONSOLE = re.compile(r"^(?:\S+\s+)?\[(?P<level>[a-z]+)\s*\]\s+(?P<event>\S+)")


class LogSource(Protocol):
    """A server whose error log the guard reads: it can be stopped and its log read."""

    def error_log_text(self) -> str: ...

    def stop(self) -> None: ...

    def log_label(self) -> str: ...


def parse_error_log(text: str) -> list[dict[str, Any]]:
    """The entries of an error log: JSON lines as dicts; console-rendered lines and plain
    text as {"level", "event", "text"}, with following traceback lines in "exception"."""
    entries: list[dict[str, Any]] = []
    continues = False  # the next non-JSON, non-console line belongs to entries[-1]
    for raw in text.splitlines():
        if not raw.strip():
            continue
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            entries.append(parsed)
            continues = False
            continue
        console = _CONSOLE.match(raw)
        if console:  # its traceback, if any, follows on the next lines
            entries.append({"level": console["level"], "event": console["event"], "text": raw})
            continues = True
        elif continues:
            last = entries[-1]
            last["exception"] = last.get("exception", "") + raw + "\n"
            # a bare traceback ends with its first unindented line ("ValueError: ...")
            continues = last["level"] is not None or raw[:1].isspace()
        elif raw.startswith("Traceback"):
            entries.append({"level": None, "event": None, "text": raw, "exception": raw + "\n"})
            continues = True
        else:
            entries.append({"level": None, "event": None, "text": raw})
    return entries


def is_failure(entry: dict[str, Any]) -> bool:
    """Warning level or worse, or any line carrying a traceback."""
    return entry.get("level") in FAILING_LEVELS or bool(entry.get("exception"))


@dataclass(eq=False)
class Expectation:
    """Lines whose fields equal `fields` (a `re.Pattern` value is searched in the text of
    the field) are allowed; from `start` on in `source`'s log, or anywhere when None."""

    fields: dict[str, Any]
    source: LogSource | None = None
    start: int = 0
    required: bool = True
    origin: str = "expect_log"

    def matches(self, source: LogSource, index: int, entry: dict[str, Any]) -> bool:
        if self.source is not None and (self.source is not source or index < self.start):
            return False
        for key, wanted in self.fields.items():
            got = entry.get(key)
            if isinstance(wanted, re.Pattern):
                if got is None or not wanted.search(str(got)):
                    return False
            elif got != wanted:
                return False
        return True

    def describe(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in self.fields.items())
        return f"{self.origin}({args})"


@dataclass(eq=False)
class LogGuard:
    """The servers one test started and the log lines it declared."""

    sources: list[LogSource] = field(default_factory=list)
    expectations: list[Expectation] = field(default_factory=list)

    def entries(self, source: LogSource) -> list[dict[str, Any]]:
        return parse_error_log(source.error_log_text())

    def problems(self) -> list[str]:
        """Undeclared warning/error lines, then required expectations never met."""
        unexpected: list[str] = []
        met: set[int] = set()
        for source in self.sources:
            for index, entry in enumerate(self.entries(source)):
                hits = [e for e in self.expectations if e.matches(source, index, entry)]
                met.update(id(e) for e in hits)
                if not hits and is_failure(entry):
                    unexpected.append(f"  {source.log_label()}: {_show(entry)}")
        missing = [f"  {e.describe()}" for e in self.expectations
                   if e.required and id(e) not in met]
        report = []
        if unexpected:
            report += ["error-log lines the test did not declare (declare them with "
                       "expect_log, see tests/conftest.py):", *unexpected]
        if missing:
            report += ["declared error-log lines that were never logged:", *missing]
        return report

    def close(self) -> list[str]:
        """Stop whatever is still running (its log is then complete) and check."""
        for source in self.sources:
            source.stop()
        return self.problems()


def _show(entry: dict[str, Any]) -> str:
    if "text" in entry:
        shown = entry["text"]
        if entry.get("exception") and entry["exception"] != entry["text"] + "\n":
            shown += "\n" + entry["exception"]
        return shown
    return json.dumps(entry, ensure_ascii=False)


# One guard per running test; a stack so that a test running pytest in-process (pytester)
# gets its own inner guards without disturbing the outer test's.
_guards: list[LogGuard] = []


def push() -> LogGuard:
    guard = LogGuard()
    _guards.append(guard)
    return guard


def pop(guard: LogGuard) -> None:
    if guard in _guards:
        _guards.remove(guard)


def current() -> LogGuard | None:
    return _guards[-1] if _guards else None


def track(source: LogSource, *allowed: str) -> None:
    """Called by the server helpers: this source's log is checked after the current test.
    `allowed` are events the helper's own setup makes the server log (not required)."""
    guard = current()
    if guard is not None:
        guard.sources.append(source)
        guard.expectations += [Expectation({"event": event}, source, required=False,
                                           origin="allowed by the server helper")
                               for event in allowed]


@contextlib.contextmanager
def expect_log(server: LogSource | None = None, event: str | None = None, *,
               required: bool = True, timeout: float = WAIT_S,
               **fields: Any) -> Iterator[Expectation]:
    """Allow lines of `server` (any server of the test when None) logged from here on that
    have this `event` and these `fields`. With `required`, leaving the block waits (up to
    `timeout` s) for such a line and fails when none comes."""
    guard = current()
    if guard is None:
        raise RuntimeError("expect_log used outside a test")
    wanted = ({"event": event} if event is not None else {}) | fields
    start = len(guard.entries(server)) if server is not None else 0
    expectation = Expectation(wanted, server, start, required)
    guard.expectations.append(expectation)
    yield expectation
    if required:
        deadline = time.monotonic() + timeout
        sources = [server] if server is not None else guard.sources
        while not any(expectation.matches(source, index, entry) for source in sources
                      for index, entry in enumerate(guard.entries(source))):
            if time.monotonic() > deadline:
                expectation.required = False  # reported here, not again at teardown
                raise AssertionError(f"{expectation.describe()}: no such line was logged in "
                                     f"{timeout:g} s")
            time.sleep(0.01)


def marker_expectations(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Expectation]:
    """`@pytest.mark.expect_log("event", {"event": ..., "level": ...}, required=False)`."""
    required = kwargs.pop("required", True)
    if kwargs:
        raise TypeError(f"expect_log marker: unknown options {sorted(kwargs)}")
    expectations = []
    for arg in args:
        wanted = {"event": arg} if isinstance(arg, str) else dict(arg)
        expectations.append(Expectation(wanted, required=required,
                                        origin="@pytest.mark.expect_log"))
    return expectations
