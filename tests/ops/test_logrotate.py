"""conf/logrotate parses (`logrotate -d`) and really rotates, with paths moved into tmp_path."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf" / "logrotate"

pytestmark = pytest.mark.skipif(
    shutil.which("logrotate") is None,
    reason="logrotate not installed (apt-get install -y logrotate)",
)


def _copy_conf(tmp_path: Path, text: str | None = None) -> tuple[Path, Path]:
    """The config with /var/log/reactor -> tmp_path/log and the reactor user -> ours."""
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    text = CONF.read_text() if text is None else text
    assert "/var/log/reactor/" in text and "reactor reactor" in text
    text = text.replace("/var/log/reactor", str(tmp_path / "log"))
    text = text.replace("reactor reactor", f"{user} {group}")
    conf = tmp_path / "logrotate.conf"
    conf.write_text(text)
    conf.chmod(0o644)  # logrotate ignores group/world-writable configs
    log_dir = tmp_path / "log"
    log_dir.mkdir(exist_ok=True)
    return conf, log_dir


def _logrotate(tmp_path: Path, conf: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["logrotate", *flags, "--state", str(tmp_path / "state"), str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _errors(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in (result.stdout + result.stderr).splitlines() if "error" in line]


def test_config_parses(tmp_path: Path) -> None:
    conf, log_dir = _copy_conf(tmp_path)
    (log_dir / "access.log").write_text("{}\n")
    result = _logrotate(tmp_path, conf, "--debug")
    assert result.returncode == 0, result.stderr
    assert _errors(result) == []
    assert "rotating pattern: " in result.stderr


def test_a_bad_directive_is_reported(tmp_path: Path) -> None:
    """Guards test_config_parses: logrotate -d does complain about mistakes."""
    conf, _ = _copy_conf(tmp_path, CONF.read_text().replace("delaycompress", "delaycompres"))
    result = _logrotate(tmp_path, conf, "--debug")
    assert result.returncode != 0 or _errors(result)


def test_rotation_keeps_one_uncompressed_generation(tmp_path: Path) -> None:
    conf, log_dir = _copy_conf(tmp_path)
    access = log_dir / "access.log"
    access.write_text("first\n")
    # postrotate runs `systemctl kill ... || true`: harmless without systemd.
    first = _logrotate(tmp_path, conf, "--force")
    assert first.returncode == 0, first.stderr
    assert (log_dir / "access.log.1").read_text() == "first\n"
    assert access.read_text() == ""  # recreated by `create`
    assert access.stat().st_mode & 0o777 == 0o640

    access.write_text("second\n")
    second = _logrotate(tmp_path, conf, "--force")
    assert second.returncode == 0, second.stderr
    assert (log_dir / "access.log.1").read_text() == "second\n"  # delaycompress
    assert (log_dir / "access.log.2.gz").exists()
