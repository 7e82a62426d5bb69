"""The [static] section: document roots declared in TOML, checked with one-line errors."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from reactor.app.static import StaticMount
from reactor.ops.config import ConfigError, load_config
from tests.ops.serverproc import (
    DEADLINE_S,
    ServeProcess,
    base_config,
    get,
    server_env,
    stop_gracefully,
    wait_until,
    write_config,
)


def load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "reactor.toml"
    path.write_text(text)
    return load_config(argparse.Namespace(config=str(path), no_config=False), environ={})


def test_root_and_extra_mounts_resolve_against_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "www").mkdir()
    (tmp_path / "assets").mkdir()
    config = load(tmp_path, """
[static]
root = "www"
cache_control = "public, max-age=60"
mime_overrides = { ".log" = "text/plain", map = "application/json" }

[[static.mounts]]
prefix = "/assets"
root = "assets"
listing = true
""")
    static = config.static
    assert static.root == tmp_path / "www"
    assert static.prefix == "/"
    assert static.cache_control == "public, max-age=60"
    assert dict(static.mime_overrides) == {".log": "text/plain", ".map": "application/json"}
    assert static.mounts == ({"prefix": "/assets", "root": str(tmp_path / "assets"),
                              "listing": True},)


@pytest.mark.parametrize(("text", "message"), [
    ('[static]\nroot = "missing"', "static.root: directory"),
    ('[static]\nsymlinks = "sometimes"', 'static.symlinks: must be one of'),
    ('[static]\nmime_overrides = { ".x" = "not a type" }', "static.mime_overrides"),
    ('[[static.mounts]]\nprefix = "/a"', "mount #1: needs both prefix and root"),
    ('[[static.mounts]]\nprefix = "/a"\nroot = "."\ncolour = "red"', "unknown key 'colour'"),
    ('[[static.mounts]]\nprefix = "a"\nroot = "."', "mount #1:"),
    ('[[static.mounts]]\nprefix = "/a"\nroot = "nowhere"', "mount #1:"),
    ('[static]\nuploads = "yes"', "static.uploads"),
    ('[[static.mounts]]\nprefix = "/a"\nroot = "."\nuploads = "yes"',
     "mount #1: uploads must be true or false"),
    ('[[static.mounts]]\nprefix = "/a"\nroot = "."\nlisting = 1',
     "mount #1: listing must be true or false"),
])
def test_bad_static_settings_are_one_line_errors(tmp_path: Path, text: str,
                                                 message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, text)
    error = str(raised.value)
    assert "\n" not in error and message in error and "reactor.toml" in error


def test_uploads_are_off_unless_asked_for(tmp_path: Path) -> None:
    (tmp_path / "www").mkdir()
    (tmp_path / "drop").mkdir()
    assert load(tmp_path, '[static]\nroot = "www"').static.uploads is False
    config = load(tmp_path, """
[static]
root = "www"
uploads = true

[[static.mounts]]
prefix = "/drop"
root = "drop"
uploads = true

[[static.mounts]]
prefix = "/ro"
root = "drop"
""")
    assert config.static.uploads is True
    drop, read_only = config.static.mounts
    assert drop["uploads"] is True and "uploads" not in read_only
    mounts = [StaticMount(**mount) for mount in config.static.mounts]
    assert [m.uploads for m in mounts] == [True, False]


def test_uploads_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "reactor.toml"
    path.write_text("")
    config = load_config(argparse.Namespace(config=str(path), no_config=False),
                         environ={"REACTOR_STATIC_UPLOADS": "true"})
    assert config.static.uploads is True


@pytest.mark.parametrize(("text", "expected"), [
    ('[static]\nroot = "."\nprefix = "assets"',
     "reactor.toml:3: static.prefix: prefix 'assets' must be a plain path starting with /"),
    ('[static]\nroot = "."\nindex = "pages/index.html"',
     "reactor.toml:3: static.index: index 'pages/index.html' must be a file name"),
    ('[static]\nroot = "."\ncache_control = "max-âge=60"',
     "reactor.toml:3: static.cache_control: cache_control must be printable ASCII"),
    ('[[static.mounts]]\nprefix = "/a"\nroot = "."\n\n[[static.mounts]]\nprefix = "/a/"\n'
     'root = "."',
     'reactor.toml:6: static.mounts: mount #2: prefix "/a/" is already mounted (mount #1);'
     " one document root per prefix"),
    ('[static]\nroot = "."\nprefix = "/a"\n\n[[static.mounts]]\nprefix = "/a"\nroot = "."',
     'reactor.toml:6: static.mounts: mount #1: prefix "/a" is already mounted'
     " (static.prefix); one document root per prefix"),
])
@pytest.mark.parametrize("command", ["check-config", "serve"])
def test_a_root_the_mount_refuses_is_one_line_before_serving(
        tmp_path: Path, text: str, expected: str, command: str) -> None:
    """What the document root refuses when the app is built (a prefix, index file or
    Cache-Control the mount cannot take, two roots at one prefix) is the setting's error at
    load: `check-config` said the file was fine and `serve` died with a traceback (exit 1)."""
    config = tmp_path / "reactor.toml"
    config.write_text(text)
    env = server_env(REACTOR_SERVER_LISTEN="127.0.0.1:0")
    result = subprocess.run([sys.executable, "-m", "reactor", command, "--config", str(config)],
                            cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=DEADLINE_S)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"reactor: {config.parent}/{expected}\n"


def test_a_mount_through_a_symlink_follows_a_deploy_that_swaps_it(tmp_path: Path) -> None:
    """`root = "/srv/site/current"` with `current -> releases/N`, swapped by a deploy: the
    mount serves the new release at once, as [static] root does (the link was resolved at
    load, so it served the old release -- 404 once that was removed -- until a HUP)."""
    for release in ("1", "2"):
        (tmp_path / "releases" / release).mkdir(parents=True)
        (tmp_path / "releases" / release / "v.txt").write_text(f"release {release}")
    current = tmp_path / "current"
    current.symlink_to(Path("releases", "1"))
    config = write_config(tmp_path / "reactor.toml", base_config(tmp_path))
    with config.open("a") as file:
        file.write('\n[[static.mounts]]\nprefix = "/site/"\nroot = "current"\n')
    process = ServeProcess(["--config", str(config)], cwd=tmp_path)
    try:
        assert get(process.port, "/site/v.txt").body == b"release 1"
        (tmp_path / "next").symlink_to(Path("releases", "2"))
        (tmp_path / "next").replace(current)
        # within the open-file cache's 1 s validity the old bytes may still answer
        wait_until(lambda: get(process.port, "/site/v.txt").body == b"release 2",
                   what="the new release")
    finally:
        stop_gracefully(process)
