"""Smoke tests of the harness that need no peer installed.

Run with ``.venv/bin/python -m pytest bench/test_harness.py`` (CI's ``pytest`` only
collects ``tests/``). The last test starts the stdlib threaded server; it is skipped
when ``taskset`` is missing.
"""

from __future__ import annotations

import shutil
import sys
import time
from datetime import datetime

import pytest

from bench import APPS_DIR
from bench.content import BIG_SIZE, big_bytes, ensure_content, page_bytes
from bench.idle import percentile, response_complete
from bench.peers_setup import SetupInfo
from bench.report import Report, RunRecord, ServerRecord, render, table
from bench.servers import BY_NAME, Context, find_bound_port, nginx_config
from bench.workloads import BY_NAME as WORKLOADS
from bench.workloads import select_workloads
from bench.wrk import WrkError, WrkResult, parse_wrk_output, wrk_command

WRK_OUT = """Running 3s test @ http://127.0.0.1:1/echo/abc
  47723 requests in 3.01s, 4.82MB read
BENCH_JSON {"requests":30000,"duration_us":3000000,"bytes":5058638,"errors":{"connect":0,\
"read":2,"write":0,"status":1,"timeout":0},"latency_us":{"p50":1500,"p90":4000,"p99":13000,\
"mean":2495.8,"max":86441,"stdev":4068.5}}
"""


def test_parse_wrk_output() -> None:
    res = parse_wrk_output(WRK_OUT)
    assert res.rps == pytest.approx(10_000)
    assert (res.p50_ms, res.p99_ms) == (1.5, 13.0)
    assert res.total_errors == 3
    assert res.errors_text() == "3 (read 2, status 1)"
    with pytest.raises(WrkError):
        parse_wrk_output("no result here")


def test_wrk_command_pipeline_and_headers() -> None:
    argv = wrk_command("http://127.0.0.1:9/echo/abc", WORKLOADS["pipeline16"], 3)
    assert argv[:4] == ["taskset", "-c", "1", "wrk"]
    assert argv[-3:] == ["http://127.0.0.1:9/echo/abc", "--", "16"]
    close = wrk_command("http://127.0.0.1:9/echo/abc", WORKLOADS["close50"], 3)
    assert close[close.index("-H") + 1] == "Connection: close"


def test_select_workloads() -> None:
    assert [w.name for w in select_workloads("page100k,echo1")] == ["echo1", "page100k"]
    with pytest.raises(ValueError):
        select_workloads("nope")


def test_find_bound_port() -> None:
    line = '{"event":"listening","host":"127.0.0.1","port":39569,"url":"http://127.0.0.1:39569"}'
    assert find_bound_port(line) == 39569
    assert find_bound_port('{"port": 0}') is None
    assert find_bound_port("Listening at: http://127.0.0.1:8123 (42)") == 8123


def test_response_complete_and_percentile() -> None:
    assert not response_complete(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nab")
    assert response_complete(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc")
    assert response_complete(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([], 99) == 0.0


def test_content_is_deterministic(tmp_path) -> None:
    assert big_bytes() == big_bytes() and len(big_bytes()) == BIG_SIZE
    page = page_bytes()
    assert page == page_bytes() and 99_000 < len(page) < 101_000
    content = ensure_content(tmp_path)
    assert (tmp_path / "page.html").read_bytes() == content.page


def test_nginx_config_filled(tmp_path) -> None:
    # in the test's directory: a bench run may be using bench/.work/nginx right now
    conf = nginx_config(Context(8123, tmp_path, tmp_path / "access.log"),
                        prefix=tmp_path / "nginx").read_text()
    assert "listen 127.0.0.1:8123" in conf and "${" not in conf
    assert f"access_log {tmp_path / 'access.log'}" in conf
    assert "return 200 $text;" in conf


def test_common_gzip_rules() -> None:
    sys.path.insert(0, str(APPS_DIR))
    try:
        import common
    finally:
        sys.path.remove(str(APPS_DIR))
    from pathlib import Path

    page, blob = Path("x.html"), Path("x.bin")
    assert common.wants_gzip(page, "gzip, deflate")
    assert not common.wants_gzip(page, "gzip;q=0")
    assert not common.wants_gzip(blob, "gzip")
    assert common.resolve_file(Path("/"), "../etc") is None


def _report() -> Report:
    rep = Report(started=datetime(2025, 1, 2, 3, 4), title_suffix="", settings={"a": "b"},
                 machine={"nproc": "2"}, versions={"wrk": "4.1.0"},
                 workloads=select_workloads("echo50,page100k,idle10k"))
    for name in ("reactor", "uvicorn", "nginx"):
        rep.servers[name] = ServerRecord(name, name, "file", status="ran",
                                         page_gzip=name != "reactor")
    for name, rps in (("reactor", 2000), ("uvicorn", 1000), ("nginx", 8000)):
        res = WrkResult(requests=rps * 10, duration_s=10, bytes=rps * 1000,
                        errors={"read": 0}, p50_ms=1, p99_ms=5)
        rep.runs.append(RunRecord(name, "echo50", res, rss_kib=20480, cpu_us=1e6 / rps))
    rep.runs.append(RunRecord("uvicorn", "page100k", error="probe failed: page"))
    rep.idle["nginx"] = "ConnectionError: boom"
    return rep


def test_render_tables_and_ratios() -> None:
    text = render(_report())
    assert "| echo50 | 2,000 | uvicorn 1,000 | 2.00x | 0.25x | n/a |" in text
    assert "| uvicorn | 1,000 | 1.00 | 5.00 | 1000.0 | 20.0 | 0 | 2.00x |" in text
    assert "reactor sent the page uncompressed" in text
    assert "| nginx | failed |" in text
    assert table(["a", "b"], [["1", "2"]], numeric=True).splitlines()[1] == "| --- | ---: |"


def test_best_of_rounds_shows_every_run() -> None:
    from bench.cli import Job, estimate_s

    rep = _report()
    for run in rep.runs:
        run.round_rps = [run.result.rps] if run.result else []
    rep.runs[0].round_rps = [1900.0, 2000.0, 1500.0]
    text = render(rep)
    assert ("| reactor | 2,000 | 1.00 | 5.00 | 500.0 | 20.0 | 0 | 1.00x | 1,900 / 2,000 / 1,500 |"
            in text)
    assert "| uvicorn | 1,000 | 1.00 | 5.00 | 1000.0 | 20.0 | 0 | 2.00x | 1,000 |" in text
    job = [Job(BY_NAME["reactor"], select_workloads("echo50"))]
    assert estimate_s(job, 5, 1, rounds=3) - estimate_s(job, 5, 1) == pytest.approx(2 * 5.4)


def test_plan_trims_python_peers() -> None:
    from bench.cli import first_pass, rank_peers, second_pass

    info = SetupInfo(have_wrk=True, have_nginx=False, venv_ok=True)
    specs = [BY_NAME[n] for n in ("reactor", "reactor-busypoll", "nginx", "uvicorn", "tornado",
                                  "twisted")]
    workloads = select_workloads(None)
    jobs, notes = first_pass(specs, workloads, info, everything=False)
    assert notes == ["nginx: skipped, nginx is not installed"]
    by_name = {j.spec.name: [w.name for w in j.workloads] for j in jobs}
    assert by_name["tornado"] == ["echo50"] and len(by_name["reactor"]) == len(workloads)
    assert by_name["reactor-busypoll"] == ["echo1", "echo50"]
    jobs, _ = first_pass(specs, select_workloads("file1m"), info, everything=True)
    assert "reactor-busypoll" not in {j.spec.name for j in jobs}
    rep = _report()
    rep.runs += [RunRecord("twisted", "echo50", WrkResult(50_000, 10, 1)),
                 RunRecord("tornado", "echo50", WrkResult(30_000, 10, 1))]
    ranked = rank_peers([j.spec for j in jobs if j.spec.peer], rep)
    assert [s.name for s in ranked] == ["twisted", "tornado", "uvicorn"]
    later = second_pass(ranked, workloads)
    assert [j.spec.name for j in later] == ["twisted", "tornado"]
    assert "echo50" not in [w.name for w in later[0].workloads]
    assert [w.name for w in later[1].workloads] == ["idle10k"]


@pytest.mark.skipif(shutil.which("taskset") is None, reason="needs taskset")
def test_threaded_server_starts_and_probes(tmp_path) -> None:
    from bench import procs
    from bench.probe import probe
    from bench.servers import start

    content = ensure_content(tmp_path / "www")
    running = start(BY_NAME["threaded"], content.www, timeout=10)
    try:
        result = probe(running.port, content)
        assert result.summary() == "all checks passed" and result.page_gzip
        assert running.rss_kib() > 1000
    finally:
        running.stop()
        procs.stop_all()


@pytest.mark.skipif(shutil.which("taskset") is None or shutil.which("wrk") is None,
                    reason="needs taskset and wrk")
def test_cpureq_divides_both_sides_cpu_by_the_requests(tmp_path) -> None:
    from bench import procs
    from bench.cpureq import measure
    from bench.servers import start

    content = ensure_content(tmp_path / "www")
    running = start(BY_NAME["threaded"], content.www, timeout=10)
    try:
        result = measure(running.proc.pid, f"http://127.0.0.1:{running.port}/echo/abc",
                         connections=4, duration=1)
        assert result.rps > 0 and result.server_us > 0 and result.wrk_us > 0
        assert "req/s" in result.line("threaded")
    finally:
        running.stop()
        procs.stop_all()


def test_hotpath_measures_a_real_request_cycle() -> None:
    from bench.hotpath import measure

    assert 0 < measure("off", requests=200, rounds=2) < 0.01  # seconds per request


def test_hotpath_over_a_socket_answers_each_request_and_has_a_floor() -> None:
    from bench.hotpath import measure, measure_floor

    # `measure` raises unless the first answer over the socket is the echo's 200
    assert 0 < measure("off", requests=200, rounds=2, lb=True, over_socket=True) < 0.01
    assert 0 < measure_floor(requests=200, rounds=2) < 0.01


def test_report_shows_hotpath_and_plot_and_the_plot_series(tmp_path) -> None:
    import json

    from bench.plot import series
    from bench.report import to_json, write

    rep = _report()
    rep.hotpath = [("taskset -c 0 python -m bench.hotpath", "11.0 µs CPU per /echo request")]
    rep.plot = rep.started.strftime("%Y-%m-%d-%H%M") + ".png"
    write(rep, tmp_path)
    text = (tmp_path / f"{rep.started.strftime('%Y-%m-%d-%H%M')}.md").read_text()
    assert f"]({rep.plot})" in text and "| `taskset -c 0 python -m bench.hotpath` |" in text
    assert "](latest.png)" in (tmp_path / "latest.md").read_text()
    workloads, rps = series(json.loads(to_json(rep)))
    assert workloads == ["echo50"] and rps["uvicorn"]["echo50"] == 1000.0


def test_group_cpu_counts_the_work_of_a_process_group() -> None:
    import subprocess

    from bench import procs

    proc = subprocess.Popen([sys.executable, "-c", "import time\nend = time.process_time() + 0.3"
                             "\nwhile time.process_time() < end: pass"],
                            start_new_session=True)
    proc.wait(timeout=30)  # gone: nothing left to count
    assert procs.group_cpu_s(proc.pid) == 0.0
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while procs.group_cpu_s(busy.pid) < 0.2:  # a busy child's CPU shows up, by its group
            assert time.monotonic() < deadline, "no CPU counted for a busy process"
            time.sleep(0.05)
    finally:
        busy.kill()
        busy.wait()


def test_time_wait_sockets_counts_a_closed_connection_on_its_port() -> None:
    import socket

    from bench.cli import settle_time_wait, time_wait_sockets

    # A port the earlier tests' connections left no TIME_WAIT socket on (any ephemeral port
    # can have one, as a client's end): the count must be ours alone.
    for _ in range(50):
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        if time_wait_sockets(port) == 0:
            break
        listener.close()
    assert time_wait_sockets(port) == 0
    client = socket.create_connection(("127.0.0.1", port))
    server_side, _ = listener.accept()
    server_side.close()  # the server closes first: its end waits in TIME_WAIT
    assert client.recv(1) == b""
    client.close()
    listener.close()
    deadline = time.monotonic() + 5.0  # the client's FIN may still be on its way
    while time_wait_sockets(port) == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert time_wait_sockets(port) == 1
    assert settle_time_wait(port, limit_s=0.0) == pytest.approx(0.0, abs=0.5)  # one is fine


def test_steady_rate_reports_cpu_and_latency(capsys: pytest.CaptureFixture[str]) -> None:
    # A real `reactor serve` (busy polling on, then off) at 200 req/s for half a second.
    from bench import steady

    steady.main(["--rate", "200", "--seconds", "0.5", "--rounds", "1",
                 "--busy-poll-us", "100,0"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["busy_poll_us=100", "busy_poll_us=0"]
    for line in lines:
        words = line.split()
        cpu, p50, p99 = float(words[5].rstrip("%")), float(words[11]), float(words[14])
        assert 0 < cpu < 100 and 0 < p50 <= p99, line


def test_floor_server_answers_every_head_of_a_read_and_a_split_one() -> None:
    import socket
    import subprocess

    from bench import procs
    from bench.apps.floor import ANSWER

    port = procs.free_port()
    proc = procs.spawn([sys.executable, str(APPS_DIR / "floor.py"), "--port", str(port)],
                       stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and b"listening" in proc.stdout.readline()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            head = b"GET /echo/abc HTTP/1.1\r\nHost: x\r\n\r\n"
            client.sendall(head * 3 + head[:10])  # three heads and the start of a fourth
            got = b""
            while len(got) < 3 * len(ANSWER):
                got += client.recv(65536)
            assert got == ANSWER * 3
            client.sendall(head[10:])
            assert client.recv(65536) == ANSWER
    finally:
        procs.stop(proc)
        procs.stop_all()


@pytest.mark.skipif(shutil.which("taskset") is None or shutil.which("wrk") is None,
                    reason="needs taskset and wrk")
def test_pipegain_measures_both_workloads_against_the_floor() -> None:
    from bench import procs
    from bench.pipegain import _floor

    try:
        row = _floor(duration=1, rounds=1)
    finally:
        procs.stop_all()
    assert set(row.best) == {"echo50", "pipeline16"}
    assert row.gain() > 1  # 16 answers per read and write: more than one request per pass
    assert all(result.server_us > 0 for result in row.best.values())
