"""Autobahn|Testsuite against /ws/echo, driven by the `kosoku` runner (Autobahn's own case
files). `make test` runs cases 1-10 (there is no case 11); `make conformance` sets
REACTOR_AUTOBAHN_FULL=1 and adds 12.x/13.x (permessage-deflate), which take minutes.
Goal: every case OK (or INFORMATIONAL where Autobahn only informs): 0 FAILED, 0 NON-STRICT.
"""

from __future__ import annotations

import asyncio
import collections
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RunningServer, start_server

kosoku = pytest.importorskip("kosoku")

FULL = os.environ.get("REACTOR_AUTOBAHN_FULL") == "1"
BASIC_CASES = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*"]
DEFLATE_CASES = ["12.*", "13.*"]


# One server per test, not per module: the error-log guard stops every server a test started
# once that test ends (tests/logguard.py), so a module-wide server would be gone for the next.
@pytest.fixture
def echo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmp: Path = tmp_path_factory.mktemp("autobahn")
    # 9.x sends messages up to 16 MiB
    running = start_server(tmp, websocket={"max_message_bytes": 16 << 20},
                           log={"access": "off"})
    yield running
    running.stop()


def run_cases(running: RunningServer, cases: list[str], concurrency: int) -> list:
    url = f"ws://{running.host}:{running.port}/ws/echo"

    async def run() -> list:
        try:
            return list(await kosoku.run_fuzzingclient(url, cases, concurrency=concurrency))
        except kosoku.FailureError as failure:
            return failure.results

    return asyncio.run(run())


def retry_timeouts(running: RunningServer, results: list) -> list:
    """Run once more the cases that ran out of the runner's time budget (their messages all
    echoed correctly so far): on two shared, busy cores the 128 KiB x 1000 deflate cases can
    exceed it. A protocol verdict is never retried."""
    slow = [r.case_id for r in results if str(r.result).startswith("Case did not finish")]
    if not slow:
        return results
    print(f"\nretrying {slow} (over the runner's time budget)")
    again = {r.case_id: r for r in run_cases(running, slow, concurrency=1)}
    return [again.get(r.case_id, r) for r in results]


def check(results: list, label: str) -> None:
    verdicts = collections.Counter(r.behavior.value for r in results)
    closes = collections.Counter(r.behavior_close.value for r in results)
    print(f"\nAutobahn {label}: {len(results)} cases; behavior {dict(verdicts)};"
          f" close {dict(closes)}")
    bad = [f"{r.case_id}: {r.behavior.value}/{r.behavior_close.value} {r.result}"
           for r in results
           if r.behavior.value not in ("OK", "INFORMATIONAL")
           or r.behavior_close.value not in ("OK", "INFORMATIONAL")]
    assert not bad, "\n".join(bad)
    assert results


def test_autobahn_cases_1_to_10(echo_server: RunningServer) -> None:
    results = retry_timeouts(echo_server, run_cases(echo_server, BASIC_CASES, concurrency=4))
    check(results, "1-10")
    assert len(results) >= 300


@pytest.mark.skipif(not FULL, reason="permessage-deflate cases take minutes: make conformance")
def test_autobahn_cases_12_and_13_deflate(echo_server: RunningServer) -> None:
    # one at a time: each case has a time budget the runner enforces
    results = retry_timeouts(echo_server, run_cases(echo_server, DEFLATE_CASES, concurrency=1))
    check(results, "12-13")
    assert len(results) == 216
