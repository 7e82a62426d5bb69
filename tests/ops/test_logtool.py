"""`reactor logs`: filters, stats numbers, errors, and --follow across a real rotation."""

from __future__ import annotations

import gzip
import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from reactor.ops.logtool import Tail, logs_main, nearest_rank

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 25, 2, 36, 30, tzinfo=UTC)


def ts(seconds: float) -> str:
    return (
        (T0 + timedelta(seconds=seconds)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def request(n: int, **fields: Any) -> dict[str, Any]:
    record = {
        "ts": ts(n), "level": "info", "event": "request", "schema": 1,
        "request_id": f"req{n:04d}", "conn_id": n, "request_no": 1,
        "remote_addr": "127.0.0.1", "remote_port": 50000 + n, "method": "GET",
        "path": "/echo/hi", "query": "", "http_version": "1.1", "status": 200,
        "bytes_in": 0, "bytes_out": 100, "duration_ms": float(n), "queue_ms": None,
        "user_agent": "curl/8.0", "referer": None, "content_encoding": None,
        "keepalive_reuse": False,
    }  # fmt: skip
    record.update(fields)
    return record


REJECTED = {
    "ts": ts(5.5), "level": "info", "event": "rejected", "schema": 1, "status": 400,
    "reason": "obs-fold", "remote_addr": "10.0.0.9", "method": None, "path": None,
    "request_id": None,
}  # fmt: skip
GARBAGE = [
    "not json at all",
    '{"ts": "2026-11-25T02:36:31Z", "event": "conn_shed", "open": 5000}',
    '["a", "list"]',
    '{"event": "request", "status": 200',  # truncated by a crash
]


def sample() -> list[dict[str, Any]]:
    """Ten records: eight requests, one 404, one slow 503, and a rejected protocol error."""
    return [
        request(1),
        request(2, path="/api/users", query="page=2", method="POST", status=201),
        request(3, path="/api/users", status=404, remote_addr="10.0.0.2"),
        request(4, path="/static/app.js", bytes_out=5000, user_agent="Mozilla/5.0"),
        request(5, status=503, duration_ms=1600.0, remote_addr="10.0.0.2"),
        REJECTED,
        request(6, path="/api/items", duration_ms=300.0),
        request(7, method="HEAD", bytes_out=None, duration_ms=None),
        request(8, user_agent=None),
        request(9, path="/api/users"),
    ]


def write_log(path: Path, records: list[dict[str, Any]], garbage: list[str] = GARBAGE) -> Path:
    lines = [json.dumps(r) for r in records]
    for i, junk in enumerate(garbage):  # interleave the garbage
        lines.insert(2 * i + 1, junk)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return write_log(tmp_path / "access.log", sample())


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = logs_main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def ids(out: str) -> list[str]:
    """request_id (or "-") of each --json output line."""
    return [json.loads(line)["request_id"] or "-" for line in out.splitlines()]


def test_prints_every_record_and_counts_skipped_lines(
    log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run([str(log)], capsys)
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 10
    assert lines[0].split() == [
        "2026-11-25T02:36:31.000Z", "200", "GET", "1.00ms", "100", "127.0.0.1", "req0001",
        "/echo/hi",
    ]  # fmt: skip
    assert lines[1].split()[-1] == "/api/users?page=2"
    assert lines[5].split()[1:3] == ["400", "-"] and "(rejected: obs-fold)" in lines[5]
    assert len({line.index("req0") for line in lines if "req0" in line}) == 1  # aligned
    assert err == "reactor logs: skipped 4 lines that are not request records\n"


def test_lines_without_follow_prints_the_last_n_records(
    log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["-n", "2", str(log), "--json"], capsys)
    assert code == 0
    assert out.splitlines() == [json.dumps(r) for r in sample()[-2:]]
    code, out, _ = run(["--lines", "2", "--status", "404,503", str(log), "--json"], capsys)
    assert ids(out) == ["req0003", "req0005"]  # the last N matching records
    assert run(["-n", "0", str(log)], capsys)[1] == ""


def test_json_prints_the_original_lines(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run([str(log), "--json"], capsys)
    assert code == 0
    assert out.splitlines() == [json.dumps(r) for r in sample()]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--status", "5xx"], ["req0005"]),
        (["--status", "404"], ["req0003"]),
        (["--status", "4xx,5xx"], ["req0003", "req0005", "-"]),
        (["--status", "201,4XX"], ["req0002", "req0003", "-"]),
        (["--slower-than", "500ms"], ["req0005"]),
        (["--slower-than", "1.5s"], ["req0005"]),
        (["--slower-than", "250"], ["req0005", "req0006"]),
        (["--slower-than", "8"], ["req0005", "req0006", "req0009"]),  # strictly slower
        (["--path", "/api/"], ["req0002", "req0003", "req0006", "req0009"]),
        (["--method", "post"], ["req0002"]),
        (["--method", "HEAD"], ["req0007"]),
        (["--since", ts(8)], ["req0008", "req0009"]),
        (["--since", "2026-11-25T02:36:38"], ["req0008", "req0009"]),  # naive = UTC
        (["--path", "/api", "--status", "2xx"], ["req0002", "req0006", "req0009"]),
    ],
)
def test_filters(
    log: Path, capsys: pytest.CaptureFixture[str], argv: list[str], expected: list[str]
) -> None:
    code, out, _ = run([str(log), "--json", *argv], capsys)
    assert code == 0
    assert sorted(ids(out)) == sorted(expected)


def test_since_accepts_an_age(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    now = datetime.now(UTC)
    old = request(1, ts=(now - timedelta(minutes=20)).isoformat())
    new = request(2, ts=(now - timedelta(minutes=5)).isoformat())
    log = write_log(tmp_path / "access.log", [old, new], garbage=[])
    assert ids(run([str(log), "--json", "--since", "10m"], capsys)[1]) == ["req0002"]
    assert ids(run([str(log), "--json", "--since", "1h"], capsys)[1]) == ["req0001", "req0002"]


def test_stats_numbers(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["stats", str(log), "--json"], capsys)
    assert code == 0
    stats = json.loads(out)
    assert stats["files"] == [str(log)]
    assert (stats["count"], stats["requests"], stats["rejected"]) == (10, 9, 1)
    assert stats["skipped_lines"] == 4
    assert (stats["first_ts"], stats["last_ts"], stats["span_s"]) == (ts(1), ts(9), 8.0)
    assert stats["req_per_s"] == 10 / 8
    assert stats["status_class"] == {"2xx": 7, "4xx": 2, "5xx": 1}
    assert stats["status_code"] == {"200": 6, "201": 1, "400": 1, "404": 1, "503": 1}
    # 8 durations (request 7 has none, the rejected one is not a request), sorted:
    # 1 2 3 4 8 9 300 1600 -> nearest rank: p50 = 4th, p95 = p99 = 8th
    assert stats["latency_ms"] == {
        "method": "nearest-rank", "count": 8, "p50": 4.0, "p95": 1600.0, "p99": 1600.0,
        "max": 1600.0,
    }  # fmt: skip
    assert stats["bytes_out"] == 100 * 7 + 5000
    assert stats["top_paths"] == [  # by count, then alphabetically
        {"path": "/echo/hi", "count": 4},
        {"path": "/api/users", "count": 3},
        {"path": "/api/items", "count": 1},
        {"path": "/static/app.js", "count": 1},
    ]
    assert stats["top_clients"] == [
        {"remote_addr": "127.0.0.1", "count": 7},
        {"remote_addr": "10.0.0.2", "count": 2},
        {"remote_addr": "10.0.0.9", "count": 1},
    ]
    assert stats["top_user_agents"] == [
        {"user_agent": "curl/8.0", "count": 7},
        {"user_agent": "Mozilla/5.0", "count": 1},
    ]


def test_stats_skip_numbers_that_are_not_finite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """NaN, Infinity, 1e999 and an integer beyond a float are skipped like a bad line's
    fields (they were a traceback in int(bytes_out), and would poison the percentiles)."""
    lines = [json.dumps(request(1)), json.dumps(request(2, duration_ms=7.0))]
    for n, raw in enumerate(("1e999", "NaN", "-Infinity", "9" * 400), start=3):
        lines.append(json.dumps(request(n)).replace('"bytes_out": 100', f'"bytes_out": {raw}')
                     .replace(f'"duration_ms": {float(n)}', f'"duration_ms": {raw}'))
    log = tmp_path / "access.log"
    log.write_text("\n".join(lines) + "\n")
    code, out, err = run(["stats", str(log), "--json"], capsys)
    assert (code, err) == (0, "")
    stats = json.loads(out)
    assert stats["count"] == 6
    assert stats["bytes_out"] == 200
    assert stats["latency_ms"]["count"] == 2 and stats["latency_ms"]["max"] == 7.0
    code, out, _ = run([str(log), "--json", "--slower-than", "5ms"], capsys)
    assert code == 0 and ids(out) == ["req0002"]


def test_stats_percentiles_by_nearest_rank(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = write_log(tmp_path / "a.log", [request(n) for n in range(20, 0, -1)], garbage=[])
    latency = json.loads(run(["stats", str(log), "--json"], capsys)[1])["latency_ms"]
    # n = 20: ranks ceil(10) = 10, ceil(19) = 19, ceil(19.8) = 20
    assert (latency["p50"], latency["p95"], latency["p99"], latency["max"]) == (10, 19, 20, 20)


@pytest.mark.parametrize(
    ("values", "percent", "expected"),
    [([], 50, None), ([7.0], 99, 7.0), ([1, 2, 3, 4], 50, 2), ([1, 2, 3, 4], 51, 3),
     (list(range(1, 101)), 95, 95), (list(range(1, 101)), 99, 99), ([1, 2], 0, 1)],
)  # fmt: skip
def test_nearest_rank(values: list[float], percent: int, expected: float | None) -> None:
    assert nearest_rank(values, percent) == expected


def test_stats_filters_top_and_several_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = write_log(tmp_path / "access.log", sample())
    rotated = tmp_path / "access.log.2.gz"
    with gzip.open(rotated, "wt") as f:
        f.write(json.dumps(request(40, path="/api/old", status=500)) + "\ngarbage\n")
    argv = ["stats", str(first), str(rotated), "--json", "--path", "/api", "--top", "1"]
    stats = json.loads(run(argv, capsys)[1])
    assert stats["count"] == 5
    assert stats["skipped_lines"] == 5
    assert stats["status_class"] == {"2xx": 3, "4xx": 1, "5xx": 1}
    assert stats["top_paths"] == [{"path": "/api/users", "count": 3}]


def test_stats_table_for_people(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["stats", str(log)], capsys)
    assert code == 0
    lines = out.splitlines()
    assert "records       10  (9 requests, 1 rejected; 4 lines skipped)" in lines
    assert "rate          1.25 req/s" in lines
    assert any(line.split() == ["2xx", "7", "70.0"] for line in lines)
    assert any(line.split() == ["503", "1", "10.0"] for line in lines)
    assert "latency ms    p50 4.00  p95 1600.00  p99 1600.00  max 1600.00" in out
    assert lines[lines.index("top paths") + 1].split() == ["4", "/echo/hi"]


def test_stats_of_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.log"
    empty.write_text("")
    code, out, _ = run(["stats", str(empty)], capsys)
    assert code == 0 and "records       0" in out
    stats = json.loads(run(["stats", str(empty), "--json"], capsys)[1])
    assert stats["latency_ms"]["p50"] is None and stats["req_per_s"] is None


def test_terminal_escapes_in_a_logged_path_are_made_visible(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = write_log(tmp_path / "a.log", [request(1, path="/x\x1b[2J\u0007")], garbage=[])
    out = run([str(log)], capsys)[1]
    assert "\x1b" not in out and "\x07" not in out
    assert out.split()[-1] == "/x\\x1b[2J\\x07"


def test_reads_piped_stdin(
    log: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(log.read_text()))
    code, out, _ = run(["--json", "--status", "404"], capsys)
    assert (code, ids(out)) == (0, ["req0003"])


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    "argv",
    [
        ["x.log", "--status", "6xx"],
        ["x.log", "--status", ""],
        ["x.log", "--slower-than", "fast"],
        ["x.log", "--slower-than", "5min"],
        ["x.log", "--since", "yesterday"],
        ["x.log", "--since", "999999999d"],  # beyond year 1: was an OverflowError traceback
        ["x.log", "--since", "9" * 400 + "s"],  # beyond a float
        ["x.log", "--method", " "],
        ["x.log", "--lines", "-1"],
        ["x.log", "--bogus"],
        ["a.log", "b.log"],
        ["stats", "--top", "many"],
        [],  # no FILE and stdin is a terminal
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", _Terminal())
    code, out, err = run(argv, capsys)
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1 and ": error: " in err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["stats", "--help"], capsys)
    assert code == 0 and "--slower-than" in out


@pytest.mark.parametrize("command", [[], ["stats"], ["-f"]])
def test_unreadable_file_exits_1_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    missing = tmp_path / "missing.log"
    code, _, err = run([*command, str(missing)], capsys)
    assert code == 1
    assert err.splitlines() == [
        f"{'reactor logs stats' if command == ['stats'] else 'reactor logs'}: "
        f"cannot read {missing}: No such file or directory"
    ]


def test_unreadable_gzip_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "access.log.3.gz"
    bad.write_bytes(b"this is not gzip")
    code, _, err = run(["stats", str(bad)], capsys)
    assert code == 1 and f"cannot read {bad}: " in err


@pytest.mark.parametrize("command", [[], ["stats"]])
def test_a_corrupt_rotated_gzip_is_one_line_exit_1(tmp_path: Path, command: list[str]) -> None:
    """A .gz whose header is fine but whose deflate data is damaged (a rotated log cut or
    corrupted on disk) raised zlib.error, which is no OSError: a traceback, not the one
    `cannot read` line the other unreadable files get."""
    bad = tmp_path / "access.log.2.gz"
    bad.write_bytes(gzip.compress(b"")[:10] + b"\xff" * 16)  # a reserved block type
    done = subprocess.run([sys.executable, "-m", "reactor", "logs", *command, str(bad)],
                          capture_output=True, text=True, timeout=30, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    prog = "reactor logs stats" if command else "reactor logs"
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (f"{prog}: cannot read {bad}: Error -3 while decompressing data:"
                           " invalid block type\n")


def test_tail_holds_back_partial_lines_and_handles_truncation(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.write_bytes(b"one\ntwo\nthree\n")
    tail = Tail(str(path), last_lines=2)
    assert tail.read_lines() == [b"two", b"three"]
    with path.open("ab") as f:
        f.write(b"fo")
        f.flush()
        assert tail.read_lines() == []
        f.write(b"ur\n")
    assert tail.read_lines() == [b"four"]
    path.write_bytes(b"new\n")  # truncated in place, as by copytruncate
    assert tail.read_lines() == [b"new"]
    tail.close()


@pytest.mark.parametrize(
    ("content", "last", "expected"),
    [
        (b"a\nb\nc\n", 0, []),
        (b"a\nb\nc\n", 1, [b"c"]),
        (b"a\nb\nc\n", 5, [b"a", b"b", b"c"]),
        (b"a\nb\nc", 2, [b"b"]),  # "c" is unfinished: held back
        (b"", 3, []),
        (b"x" * 70000 + b"\n" + b"y" * 70000 + b"\n", 1, [b"y" * 70000]),  # spans blocks
    ],
)
def test_tail_starts_at_the_last_lines(
    tmp_path: Path, content: bytes, last: int, expected: list[bytes]
) -> None:
    path = tmp_path / "access.log"
    path.write_bytes(content)
    tail = Tail(str(path), last_lines=last)
    assert tail.read_lines() == expected
    tail.close()


class Follower:
    """`reactor logs -f --json FILE` in a subprocess, its stdout read by a thread."""

    def __init__(self, path: Path) -> None:
        code = "import sys; from reactor.ops.logtool import logs_main; "
        code += "sys.exit(logs_main(sys.argv[1:]))"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, "-f", "--json", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, PYTHONPATH=str(REPO)),
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, *records: dict[str, Any], timeout_s: float = 10) -> None:
        deadline = time.monotonic() + timeout_s
        for record in records:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"follower did not print {record['request_id']}")
            assert json.loads(line) == record


def append(path: Path, *records: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in records))


def test_follow_across_rotation(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    records = [request(n) for n in range(1, 8)]
    append(log, records[0])
    follower = Follower(log)
    try:
        follower.expect(records[0])  # existing tail printed: the follower is running
        append(log, records[1])
        follower.expect(records[1])
        rotated = tmp_path / "access.log.1"
        log.rename(rotated)  # logrotate: rename, then create ...
        append(rotated, records[2])  # ... the server writes on until SIGUSR1 ...
        log.touch()
        time.sleep(0.6)  # let the follower switch to the new, still empty file
        append(rotated, records[3])  # ... then reopens
        append(log, records[4], records[5])
        follower.expect(*records[2:6])
        log.write_text("")  # copytruncate
        append(log, records[6])
        follower.expect(records[6])
        follower.proc.send_signal(signal.SIGTERM)
        assert follower.proc.wait(timeout=10) == 0
        assert follower.lines.empty()
    finally:
        follower.proc.kill()
        follower.proc.wait()


def test_following_a_compressed_rotation_is_a_usage_error(log: Path) -> None:
    """`reactor logs -f access.log.1.gz` waited forever in silence: a rotated .gz never grows."""
    rotated = log.with_name("access.log.1.gz")
    rotated.write_bytes(gzip.compress(log.read_bytes()))
    code = "import sys; from reactor.ops.logtool import logs_main; "
    code += "sys.exit(logs_main(sys.argv[1:]))"
    try:
        done = subprocess.run([sys.executable, "-c", code, "-f", str(rotated)],
                              capture_output=True, text=True, timeout=10,
                              env=dict(os.environ, PYTHONPATH=str(REPO)))
    except subprocess.TimeoutExpired:
        pytest.fail("reactor logs -f on a .gz did not return")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "never grows" in done.stderr
