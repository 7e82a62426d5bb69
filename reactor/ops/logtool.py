"""`reactor logs`: filter, follow and summarise the JSON access log (schema v1).

Strategy
--------
The server writes one JSON object per line. Records are the "request" events and the
"rejected" events (protocol errors and timeouts answered before a request existed: they have
a status but no method and no latency). Any other line -- other events, blank-free garbage,
truncated JSON -- is skipped and counted, never fatal: the tool must work on a live, rotated,
half-written log.

    reactor logs [FILE] [-f] [-n N] [--json] [filters]     matching records, one per line
    reactor logs stats [FILE...] [--json] [--top N] [filters]   counts, rates, latency

Filters (all must match; commas in --status mean "any of"):
    --status 5xx|404|4xx,5xx   --slower-than 500ms|1.5s|250 (bare = ms)   --path PREFIX
    --method GET   --since 2026-11-25T02:00:00Z|10m|2h|1d

--follow behaves like `tail -F`: it polls the path, drains and keeps the old file open for a
grace period when the path is renamed and recreated (the server writes to the old file until
it reopens on SIGUSR1), and starts over when the file shrinks (copytruncate). SIGINT and
SIGTERM stop it with exit status 0. Bad arguments exit 2, an unreadable file exits 1.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import re
import signal
import sys
import threading
import time
import zlib
from array import array
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from reactor.ops.tail import ReadError, Tail

Record = dict[str, Any]

RECORD_EVENTS = frozenset({"request", "rejected"})
FOLLOW_POLL_S = 0.25
"""How long a rotated-away file is still read after the path points to a new one."""
TOP_DEFAULT = 10
TAIL_DEFAULT = 10  # lines --follow starts with, as tail -f

_STATUS_ITEM = re.compile(r"([1-5])xx|([1-5]\d\d)", re.IGNORECASE)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s)?")
_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class UsageError(Exception):
    """A bad command line: reported in one line, exit status 2."""


class _Stopped(Exception):
    """Raised by the SIGINT/SIGTERM handler installed while following."""


# -- parsing values and records -----------------------------------------------------------


def parse_status(text: str) -> tuple[frozenset[int], frozenset[int]]:
    """Parse "4xx,503" into (classes {4}, codes {503})."""
    classes: set[int] = set()
    codes: set[int] = set()
    for item in text.split(","):
        match = _STATUS_ITEM.fullmatch(item.strip())
        if match is None:
            raise UsageError(f"--status: expected codes or classes like 404,5xx, got {item!r}")
        if match.group(1):
            classes.add(int(match.group(1)))
        else:
            codes.add(int(match.group(2)))
    return frozenset(classes), frozenset(codes)


def parse_duration_ms(text: str) -> float:
    """Milliseconds in "500ms" (500.0), "1.5s" (1500.0) or "250" (bare numbers are ms)."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise UsageError(f"--slower-than: expected a duration like 500ms, 1.5s, 250; got {text!r}")
    value = float(match.group(1))
    return value * 1000 if match.group(2) == "s" else value


def parse_since(text: str, now: datetime) -> datetime:
    """An ISO 8601 time (naive = UTC) or an age like 30s, 10m, 2h, 1d before `now`."""
    match = _RELATIVE.fullmatch(text.strip())
    if match is not None:
        try:  # an age beyond datetime's range (year 1) or float's is bad usage, not a crash
            return now - timedelta(seconds=float(match.group(1)) * _UNIT_S[match.group(2)])
        except OverflowError:
            raise UsageError(f"--since: the age {text!r} reaches back before year 1") from None
    moment = parse_ts(text.strip())
    if moment is None:
        raise UsageError(f"--since: expected an ISO time or an age like 10m, got {text!r}")
    return moment


def parse_ts(value: object) -> datetime | None:
    """The record's "ts" as an aware datetime, or None if missing or malformed."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def parse_record(line: str) -> Record | None:
    """The record on one log line, or None for a line to skip."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("event") not in RECORD_EVENTS:
        return None
    return record


def _number(value: object) -> float | None:
    """A finite number from a record, else None: JSON may carry NaN, Infinity, 1e999 or an
    integer too large for a float, which a sum or a sort must not see (bad values are
    skipped like bad lines, never fatal)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _status(record: Record) -> int | None:
    value = record.get("status")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True, slots=True)
class Filters:
    classes: frozenset[int] = frozenset()
    codes: frozenset[int] = frozenset()
    slower_than_ms: float | None = None
    path_prefix: str | None = None
    method: str | None = None
    since: datetime | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace, now: datetime) -> Filters:
        no_status: tuple[frozenset[int], frozenset[int]] = (frozenset(), frozenset())
        classes, codes = no_status if args.status is None else parse_status(args.status)
        if args.method is not None and not args.method.strip():
            raise UsageError("--method: must not be empty")
        slower = args.slower_than
        return cls(
            classes=classes,
            codes=codes,
            slower_than_ms=None if slower is None else parse_duration_ms(slower),
            path_prefix=args.path,
            method=None if args.method is None else args.method.strip().upper(),
            since=None if args.since is None else parse_since(args.since, now),
        )

    def match(self, record: Record) -> bool:
        if self.classes or self.codes:
            status = _status(record)
            if status is None or not (status in self.codes or status // 100 in self.classes):
                return False
        if self.slower_than_ms is not None:
            duration = _number(record.get("duration_ms"))
            if duration is None or duration <= self.slower_than_ms:
                return False
        if self.path_prefix is not None:
            path = record.get("path")
            if not isinstance(path, str) or not path.startswith(self.path_prefix):
                return False
        if self.method is not None and record.get("method") != self.method:
            return False
        if self.since is not None:
            moment = parse_ts(record.get("ts"))
            if moment is None or moment < self.since:
                return False
        return True


# -- reading files ----------------------------------------------------------------------


def _open_text(path: str) -> TextIO:
    if path == "-":
        return sys.stdin
    try:
        if path.endswith(".gz"):
            return gzip.open(path, "rt", encoding="utf-8", errors="replace")
        return open(path, encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ReadError(path, exc) from None


def read_lines(path: str) -> Iterator[str]:
    """Lines of a log file ("-" = stdin, *.gz decompressed); ReadError when it fails."""
    stream = _open_text(path)
    try:
        yield from stream
    except (OSError, EOFError, zlib.error) as exc:  # a truncated or corrupt .gz fails here
        raise ReadError(path, exc) from None
    finally:
        if stream is not sys.stdin:
            stream.close()


def _safe(value: object) -> str:
    """Printable text for a terminal: a logged path must not be able to send escapes."""
    text = "-" if value is None or value == "" else str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


class LineFormatter:
    """One aligned line per record; columns for addresses and ids widen to the widest seen.

    Columns: time, status, method, duration, bytes out, client, request id, then the target
    (path?query, plus the reason for rejected events) last because its width varies most.
    """

    def __init__(self) -> None:
        self._widths = {"remote": 9, "request_id": 1}

    def format(self, record: Record) -> str:
        duration = _number(record.get("duration_ms"))
        target = _safe(record.get("path"))
        if record.get("query"):
            target += "?" + _safe(record.get("query"))
        if record.get("event") == "rejected":
            target += f"  (rejected: {_safe(record.get('reason'))})"
        return "  ".join(
            (
                _safe(record.get("ts")).ljust(24),
                _safe(record.get("status")).rjust(3),
                _safe(record.get("method")).ljust(7),
                ("-" if duration is None else f"{duration:.2f}ms").rjust(10),
                _safe(record.get("bytes_out")).rjust(9),
                self._column("remote", _safe(record.get("remote_addr"))),
                self._column("request_id", _safe(record.get("request_id"))),
                target,
            )
        )

    def _column(self, name: str, text: str) -> str:
        width = self._widths[name] = max(self._widths[name], len(text))
        return text.ljust(width)


# -- stats --------------------------------------------------------------------------------


def nearest_rank(values: Sequence[float], percent: int) -> float | None:
    """Nearest-rank percentile: the value at rank ceil(percent/100 * n) of sorted `values`."""
    if not values:
        return None
    rank = max(1, -(-percent * len(values) // 100))  # integer ceil: no float rounding
    return values[rank - 1]


class Stats:
    """Aggregates of matching records: counts, time span, statuses, latency, tops."""

    def __init__(self) -> None:
        self.requests = 0
        self.rejected = 0
        self.first: tuple[datetime, str] | None = None
        self.last: tuple[datetime, str] | None = None
        self.by_class: Counter[str] = Counter()
        self.by_code: Counter[int] = Counter()
        self.durations = array("d")
        self.bytes_out = 0
        self.paths: Counter[str] = Counter()
        self.clients: Counter[str] = Counter()
        self.agents: Counter[str] = Counter()

    def add(self, record: Record) -> None:
        if record.get("event") == "rejected":
            self.rejected += 1
        else:
            self.requests += 1
            duration = _number(record.get("duration_ms"))
            if duration is not None:
                self.durations.append(duration)
        moment = parse_ts(record.get("ts"))
        if moment is not None:
            if self.first is None or moment < self.first[0]:
                self.first = (moment, record["ts"])
            if self.last is None or moment > self.last[0]:
                self.last = (moment, record["ts"])
        status = _status(record)
        self.by_class[f"{status // 100}xx" if status is not None else "unknown"] += 1
        if status is not None:
            self.by_code[status] += 1
        bytes_out = _number(record.get("bytes_out"))
        self.bytes_out += int(bytes_out or 0)
        for counter, key in (
            (self.paths, "path"),
            (self.clients, "remote_addr"),
            (self.agents, "user_agent"),
        ):
            value = record.get(key)
            if isinstance(value, str) and value:
                counter[value] += 1

    def summary(self, top: int = TOP_DEFAULT) -> dict[str, Any]:
        count = self.requests + self.rejected
        span_s = None
        if self.first is not None and self.last is not None:
            span_s = (self.last[0] - self.first[0]).total_seconds()
        durations = sorted(self.durations)
        return {
            "count": count,
            "requests": self.requests,
            "rejected": self.rejected,
            "first_ts": self.first[1] if self.first else None,
            "last_ts": self.last[1] if self.last else None,
            "span_s": span_s,
            "req_per_s": count / span_s if span_s else None,
            "status_class": dict(sorted(self.by_class.items())),
            "status_code": {str(code): n for code, n in sorted(self.by_code.items())},
            "latency_ms": {
                "method": "nearest-rank",
                "count": len(durations),
                "p50": nearest_rank(durations, 50),
                "p95": nearest_rank(durations, 95),
                "p99": nearest_rank(durations, 99),
                "max": durations[-1] if durations else None,
            },
            "bytes_out": self.bytes_out,
            "top_paths": _top(self.paths, "path", top),
            "top_clients": _top(self.clients, "remote_addr", top),
            "top_user_agents": _top(self.agents, "user_agent", top),
        }


def _top(counter: Counter[str], key: str, n: int) -> list[dict[str, Any]]:
    ranked = sorted(counter.items(), key=lambda item: (-item[1], item[0]))[:n]
    return [{key: value, "count": count} for value, count in ranked]


def render_stats(summary: dict[str, Any]) -> str:
    """The human-readable stats table."""
    out = [f"{'files':<14}{' '.join(summary['files'])}"]
    out.append(
        f"{'records':<14}{summary['count']}  ({summary['requests']} requests, "
        f"{summary['rejected']} rejected; {summary['skipped_lines']} lines skipped)"
    )
    if summary["first_ts"] is not None:
        out.append(
            f"{'time span':<14}{summary['first_ts']} .. {summary['last_ts']}  "
            f"({summary['span_s']:.1f} s)"
        )
    rate = summary["req_per_s"]
    out.append(f"{'rate':<14}{'-' if rate is None else f'{rate:.2f} req/s'}")
    out.append(f"{'bytes out':<14}{summary['bytes_out']}")
    latency = summary["latency_ms"]
    if latency["count"]:
        figures = "  ".join(f"{k} {latency[k]:.2f}" for k in ("p50", "p95", "p99", "max"))
        out.append(f"{'latency ms':<14}{figures}  (nearest rank over {latency['count']})")
    out += ["", f"{'status':<10}{'count':>8}{'%':>8}"]
    total = summary["count"] or 1
    codes = summary["status_code"]
    for name, n in summary["status_class"].items():
        out.append(f"{name:<10}{n:>8}{100 * n / total:>8.1f}")
        for code, m in codes.items():
            if name == f"{code[0]}xx":
                out.append(f"  {code:<8}{m:>8}{100 * m / total:>8.1f}")
    for title, key, rows in (
        ("top paths", "path", summary["top_paths"]),
        ("top clients", "remote_addr", summary["top_clients"]),
        ("top user agents", "user_agent", summary["top_user_agents"]),
    ):
        out += ["", title]
        out += [f"{row['count']:>10}  {_safe(row[key])}" for row in rows] or ["         -"]
    return "\n".join(out)


# -- command line -------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would print usage and exit
        raise UsageError(message)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="JSON instead of text")
    parser.add_argument("--status", metavar="LIST", help="e.g. 5xx, 404 or 4xx,503")
    parser.add_argument("--slower-than", metavar="DURATION", help="e.g. 500ms, 1.5s, 250 (ms)")
    parser.add_argument("--path", metavar="PREFIX", help="path starts with PREFIX")
    parser.add_argument("--method", help="request method, e.g. GET")
    parser.add_argument("--since", metavar="WHEN", help="ISO time or age, e.g. 10m, 2h, 1d")


def _lines_parser() -> _Parser:
    parser = _Parser(prog="reactor logs", description="Show access-log records.")
    parser.add_argument("file", nargs="?", metavar="FILE", help="log file, - for stdin")
    parser.add_argument("-f", "--follow", action="store_true", help="wait for new lines")
    parser.add_argument(
        "-n",
        "--lines",
        type=int,
        default=None,
        metavar="N",
        help="only the last N matching records; with --follow, start with the last N lines"
             " (default 10 with --follow, else all)",
    )
    _add_common(parser)
    return parser


def _stats_parser() -> _Parser:
    parser = _Parser(prog="reactor logs stats", description="Summarise access-log records.")
    parser.add_argument("files", nargs="*", metavar="FILE", help="log files (*.gz too)")
    parser.add_argument("--top", type=int, default=TOP_DEFAULT, metavar="N")
    _add_common(parser)
    return parser


def _default_source() -> str:
    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError("give a log FILE, or pipe the log into stdin")
    return "-"


def logs_main(argv: list[str]) -> int:
    """`reactor logs ...`; returns the exit status (0 ok, 1 unreadable file, 2 bad usage)."""
    prog = "reactor logs"
    try:
        if argv[:1] == ["stats"]:
            prog = "reactor logs stats"
            args = _stats_parser().parse_args(argv[1:])
            return _run_stats(args)
        args = _lines_parser().parse_args(argv)
        return _run_lines(args)
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except ReadError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except BrokenPipeError:  # e.g. piped into `head`
        _silence_stdout()
        return 0
    except KeyboardInterrupt:
        return 130


def _run_lines(args: argparse.Namespace) -> int:
    filters = Filters.from_args(args, datetime.now(UTC))
    if args.lines is not None and args.lines < 0:
        raise UsageError("--lines: must be 0 or more")
    source = args.file or _default_source()
    if args.follow and source.endswith(".gz"):
        # a rotated, compressed log never grows: following it waited forever in silence
        raise UsageError(f"--follow: {source} is a rotated, compressed log and never grows;"
                         " follow the live log, or read this one without --follow")
    formatter = LineFormatter()
    skipped = 0

    def emit(line: str, last: deque[str] | None = None) -> None:
        """Write a matching record, or keep it in `last` (-n without --follow)."""
        nonlocal skipped
        line = line.rstrip("\r\n")
        if not line.strip():
            return
        record = parse_record(line)
        if record is None:
            skipped += 1
        elif filters.match(record):
            text = (line if args.json else formatter.format(record)) + "\n"
            if last is None:
                sys.stdout.write(text)
            else:
                last.append(text)

    if args.follow:
        _follow(source, TAIL_DEFAULT if args.lines is None else args.lines, emit)
    else:
        last: deque[str] | None = None if args.lines is None else deque(maxlen=args.lines)
        for line in read_lines(source):
            emit(line, last)
        for kept in last or ():
            sys.stdout.write(kept)
    sys.stdout.flush()
    if skipped:
        print(
            f"reactor logs: skipped {skipped} lines that are not request records", file=sys.stderr
        )
    return 0


def _follow(source: str, last_lines: int, emit: Callable[[str], None]) -> None:
    """Emit lines until SIGINT/SIGTERM; stdin is simply read to its end."""
    with _stop_on_signals():
        try:
            if source == "-":
                for line in sys.stdin:
                    emit(line)
                    sys.stdout.flush()
                return
            tail = Tail(source, last_lines)
            try:
                while True:
                    for raw in tail.read_lines():
                        emit(raw.decode("utf-8", "replace"))
                    sys.stdout.flush()
                    time.sleep(FOLLOW_POLL_S)
            finally:
                tail.close()
        except (_Stopped, KeyboardInterrupt):
            pass


@contextmanager
def _stop_on_signals() -> Iterator[None]:
    """While active, SIGINT and SIGTERM raise _Stopped (only possible in the main thread)."""
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, _raise_stopped)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _raise_stopped(signum: int, frame: object) -> None:
    raise _Stopped(signum)


def _run_stats(args: argparse.Namespace) -> int:
    filters = Filters.from_args(args, datetime.now(UTC))
    if args.top < 0:
        raise UsageError("--top: must be 0 or more")
    files = args.files or [_default_source()]
    stats = Stats()
    skipped = 0
    for path in files:
        for line in read_lines(path):
            if not line.strip():
                continue
            record = parse_record(line)
            if record is None:
                skipped += 1
            elif filters.match(record):
                stats.add(record)
    summary = {"files": files, "skipped_lines": skipped, **stats.summary(args.top)}
    sys.stdout.write(json.dumps(summary, indent=2) if args.json else render_stats(summary))
    sys.stdout.write("\n")
    sys.stdout.flush()
    return 0


def _silence_stdout() -> None:
    """After EPIPE, point stdout at /dev/null so the interpreter's final flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
