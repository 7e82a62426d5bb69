"""The wheel an operator installs with pip: built once from a copy of the sources (as pip
builds it, in an isolated build environment), then read and run away from the checkout."""

from __future__ import annotations

import email.parser
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

from reactor import __version__

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_DEPENDENCIES = {"structlog", "python-daemon"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip wheel --no-deps` of a copy of pyproject.toml, README.md and reactor/ (so the
    checkout gets no build/ or egg-info); skipped when pip cannot fetch setuptools."""
    work = tmp_path_factory.mktemp("packaging")
    source = work / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "reactor", source / "reactor",
                    ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir",
         str(work / "dist"), str(source)],
        capture_output=True, text=True, timeout=120, cwd=work)
    if built.returncode != 0:
        pytest.skip(f"pip could not build the wheel (no index?): {built.stderr.strip()[-300:]}")
    [path] = (work / "dist").glob("reactor-*.whl")
    return path


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist, built once as `python -m build --sdist` would: the [build-system]
    requirements installed apart (pip, from the index), then the backend's build_sdist on a
    copy of the sources; skipped when pip cannot fetch them."""
    work = tmp_path_factory.mktemp("sdist")
    source = work / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "MANIFEST.in"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, source / name)
    for name in ("reactor", "conf", "systemd", "examples"):
        shutil.copytree(ROOT / name, source / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    system = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]
    backend = work / "backend"
    fetched = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
         str(backend), *system["requires"]],
        capture_output=True, text=True, timeout=120, cwd=work)
    if fetched.returncode != 0:
        pytest.skip(f"pip could not fetch the build backend: {fetched.stderr.strip()[-300:]}")
    code = (f"import {system['build-backend']} as backend;"
            f"print(backend.build_sdist({str(work / 'dist')!r}))")
    built = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=120, cwd=source, env={"PYTHONPATH": str(backend),
                                                         "PATH": "/usr/bin:/bin"})
    assert built.returncode == 0, built.stderr[-2000:]
    return work / "dist" / built.stdout.split()[-1]


def test_the_sdist_has_what_the_readme_points_at(sdist: Path) -> None:
    """The sample configuration, the systemd units and the examples the README's
    installation and usage sections name (the sdist had the package only)."""
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for wanted in ("conf/reactor.toml", "conf/haproxy.cfg", "conf/logrotate",
                   "systemd/reactor.service", "systemd/reactor.socket",
                   "examples/native_app.py", "examples/flask_app.py",
                   "examples/chat/chat.py", "examples/chat/static/index.html",
                   "reactor/py.typed", "reactor/cli.py", "README.md"):
        assert wanted in names, f"{wanted} is not in {sdist.name}"
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in names)


def read(wheel: Path, name: str | None = None) -> list[str] | str:
    """The wheel's file names, or the text of its file `name`."""
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist() if name is None else archive.read(name).decode()


def test_the_wheel_marks_the_package_typed(wheel: Path) -> None:
    """`from reactor import App, Request, Response` in a type-checked app: without
    py.typed mypy skips the installed package ('missing library stubs or py.typed marker')
    and every handler decorated with @app.get becomes untyped."""
    assert "reactor/py.typed" in read(wheel)


def test_the_wheel_holds_every_module_and_only_the_runtime_dependencies(wheel: Path) -> None:
    names = set(read(wheel))
    modules = {path.relative_to(ROOT).as_posix() for path in (ROOT / "reactor").rglob("*.py")}
    assert modules <= names
    assert not any(name.startswith(("tests/", "bench/")) for name in names)
    dist_info = f"reactor-{__version__}.dist-info"
    metadata = email.parser.Parser().parsestr(str(read(wheel, f"{dist_info}/METADATA")))
    required = {line.split(">")[0].split(";")[0].strip()
                for line in metadata.get_all("Requires-Dist") or [] if "extra ==" not in line}
    assert required == RUNTIME_DEPENDENCIES
    entry_points = read(wheel, f"{dist_info}/entry_points.txt")
    assert "reactor = reactor.cli:main" in entry_points


def test_the_unpacked_wheel_runs_away_from_the_checkout(wheel: Path, tmp_path: Path) -> None:
    """The console script's commands from the wheel alone (the checkout off sys.path)."""
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    code = ("import sys; sys.path[:0] = [sys.argv.pop(1)];"
            "from reactor.cli import main; raise SystemExit(main(sys.argv[1:]))")
    env = {"PATH": "/usr/bin:/bin"}
    for argv, expected in ((["--version"], f"reactor {__version__}\n"),
                           (["check-config", "--config", str(ROOT / "conf" / "reactor.toml")],
                            f"configuration file {ROOT / 'conf' / 'reactor.toml'} test is"
                            " successful\n")):
        done = subprocess.run([sys.executable, "-c", code, str(site), *argv], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=30)
        assert (done.returncode, done.stdout, done.stderr) == (0, expected, "")
    probe = subprocess.run([sys.executable, "-c", code.replace(
        "from reactor.cli import main; raise SystemExit(main(sys.argv[1:]))",
        "import reactor; print(reactor.__file__)"), str(site)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert probe.stdout.startswith(str(site))
