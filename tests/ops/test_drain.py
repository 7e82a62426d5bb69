"""SIGTERM with timeouts.drain_s on a real process: 503 from /readyz at once, still serving,
then the graceful stop."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.ops.serverproc import ServeProcess, base_config, get, write_config


def test_sigterm_drains_then_stops(tmp_path: Path) -> None:
    config = write_config(tmp_path / "reactor.toml",
                          base_config(tmp_path, timeouts={"drain_s": 2.0}))
    proc = ServeProcess(["--config", str(config)], cwd=tmp_path)
    try:
        port = proc.port
        assert get(port, "/readyz").status == 200
        proc.send_signal(signal.SIGTERM)
        draining = proc.wait_event("draining")
        assert draining["drain_s"] == 2.0
        response = get(port, "/readyz")  # a new connection, accepted while draining
        assert (response.status, response.body) == (503, b"draining\n")
        assert get(port, "/livez").status == 200
        proc.wait_event("stopping")
        assert proc.wait() == 0
    finally:
        proc.stop()
