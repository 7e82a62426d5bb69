"""The load-balancer micro-benchmark runs end to end (tiny sizes: a smoke test, no timing)."""

from __future__ import annotations

import pytest

from bench.lb import main


def test_lb_benchmark_prints_every_figure(capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["--requests", "50"]) == 0
    out = capfd.readouterr().out
    for label in ("PROXY v1 header parse", "PROXY v2 header parse", "PROXY step",
                  "Metrics.observe", "+ metrics"):
        assert label in out
