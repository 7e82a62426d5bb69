"""Idempotent setup: wrk and nginx from apt, the peer servers in ``bench/.venv``.

Fast when already done: the tools are looked up on PATH, and the venv carries a
stamp file holding the requirements it was built from.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

from bench import BENCH_DIR, VENV_DIR
from bench.procs import run_quiet

REQUIREMENTS = BENCH_DIR / "requirements-peers.txt"
STAMP = VENV_DIR / ".bench-installed"
APT_PACKAGES = ("wrk", "nginx")
PEER_DISTS = ("waitress", "tornado", "twisted", "gunicorn", "uvicorn", "httptools", "uvloop",
              "aiohttp")


class SetupError(RuntimeError):
    """Setup cannot go on (a tool is missing and cannot be installed)."""


@dataclass
class SetupInfo:
    """What setup found or installed."""

    have_wrk: bool = False
    have_nginx: bool = False
    venv_ok: bool = False
    versions: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def venv_python() -> str:
    return str(VENV_DIR / "bin" / "python")


def _apt_install(packages: list[str], info: SetupInfo) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-q", *packages]
    print(f"setup: {' '.join(cmd)}", flush=True)
    if subprocess.run(cmd, env=env, check=False, stdout=subprocess.DEVNULL).returncode != 0:
        print("setup: apt-get install failed; running apt-get update once", flush=True)
        subprocess.run(["apt-get", "update", "-q"], env=env, check=False,
                       stdout=subprocess.DEVNULL)
        subprocess.run(cmd, env=env, check=False, stdout=subprocess.DEVNULL)
    info.notes.append(f"installed with apt: {' '.join(packages)}")


def ensure_system_tools(info: SetupInfo) -> None:
    """Install wrk and nginx through apt when missing (root only)."""
    missing = [p for p in APT_PACKAGES if shutil.which(p) is None]
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        _apt_install(missing, info)
    elif missing:
        print(
            f"setup: missing {', '.join(missing)}; not root, so not installing. "
            f"Run: sudo apt-get install -y {' '.join(missing)}",
            file=sys.stderr,
        )
    info.have_wrk = shutil.which("wrk") is not None
    info.have_nginx = shutil.which("nginx") is not None
    if not info.have_wrk:
        raise SetupError("wrk is required (apt-get install -y wrk)")
    if not info.have_nginx:
        info.notes.append("nginx missing: the nginx peer is skipped")


def ensure_venv(info: SetupInfo) -> None:
    """Create ``bench/.venv`` and install the pinned peers unless already done."""
    wanted = REQUIREMENTS.read_text()
    if STAMP.exists() and STAMP.read_text() == wanted and os.path.exists(venv_python()):
        info.venv_ok = True
        return
    print(f"setup: creating {VENV_DIR} with the peer servers (about 30 s)", flush=True)
    if not os.path.exists(venv_python()):
        subprocess.run([sys.executable, "-m", "venv", str(VENV_DIR)], check=True)
    pip = [venv_python(), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    done = subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=False)
    if done.returncode != 0:
        info.notes.append("pip install of the peers failed: Python peers skipped")
        return
    STAMP.write_text(wanted)
    info.venv_ok = True
    info.notes.append(f"installed peers into {VENV_DIR.name}: {REQUIREMENTS.name}")


def peer_versions() -> dict[str, str]:
    """Installed versions of the peer distributions (from the peers' venv)."""
    code = (
        "import json, importlib.metadata as m\n"
        f"names = {list(PEER_DISTS)!r}\n"
        "out = {}\n"
        "for n in names:\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))"
    )
    text = run_quiet([venv_python(), "-c", code])
    try:
        return json.loads(text.splitlines()[-1]) if text else {}
    except (json.JSONDecodeError, IndexError):
        return {}


def tool_versions() -> dict[str, str]:
    """wrk and nginx versions as they print them."""
    versions = {}
    wrk = run_quiet(["wrk", "-v"]).splitlines()
    if wrk:
        versions["wrk"] = wrk[0].split(" [")[0].removeprefix("wrk ").strip()
    nginx = run_quiet(["nginx", "-v"])
    if nginx:
        versions["nginx"] = nginx.rsplit("/", 1)[-1].strip()
    return versions


def setup(skip_install: bool = False) -> SetupInfo:
    """Run every setup step; ``skip_install`` only checks what is there."""
    info = SetupInfo()
    if skip_install:
        info.have_wrk = shutil.which("wrk") is not None
        info.have_nginx = shutil.which("nginx") is not None
        info.venv_ok = os.path.exists(venv_python())
        if not info.have_wrk:
            raise SetupError("wrk is required (apt-get install -y wrk)")
    else:
        ensure_system_tools(info)
        ensure_venv(info)
    if info.venv_ok:
        info.versions.update(peer_versions())
    info.versions.update(tool_versions())
    return info
