"""A package upgrade under a running server (`pip install` of a new wheel into the venv it
runs from): a reload keeps the code the process started with -- new workers are forked from
the master -- so it says that a restart is needed, naming both versions."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pytest

from reactor import __version__
from tests.ops.serverproc import REPO, ServeProcess, base_config, server_env, write_config


def install(site: Path, version: str) -> None:
    """What pip leaves in site-packages: the package and one `reactor-VERSION.dist-info`."""
    if not (site / "reactor").exists():
        (site / "reactor").symlink_to(REPO / "reactor")
    for old in site.glob("reactor-*.dist-info"):
        shutil.rmtree(old)
    info = site / f"reactor-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: reactor\nVersion: {version}\n")


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.expect_log("upgrade-needs-restart")
def test_a_reload_after_an_upgrade_says_a_restart_runs_the_new_version(
        tmp_path: Path, workers: int) -> None:
    site = tmp_path / "site-packages"
    site.mkdir()
    install(site, __version__)
    config = write_config(tmp_path / "reactor.toml",
                          base_config(tmp_path, server={"workers": workers}))
    process = ServeProcess(["--config", str(config)], cwd=tmp_path,
                           env=server_env(PYTHONPATH=str(site)))
    try:
        process.wait_event("listening")
        process.send_signal(signal.SIGHUP)  # nothing installed meanwhile: no warning
        process.wait_event("reloaded")
        install(site, "99.0")
        process.send_signal(signal.SIGHUP)
        process.wait_event("reloaded", count=2)
        warning = process.wait_event("upgrade-needs-restart")
        assert (warning["running"], warning["installed"]) == (__version__, "99.0")
        assert len(process.events("upgrade-needs-restart")) == 1
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        process.stop()
