"""[proxy], [health], [metrics], timeouts.drain_s/proxy_header_s: loading, errors, the flag,
and reloading them into a running server."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from reactor.ops.config import Config, ConfigError, add_serve_arguments, load_config
from tests.conftest import RawClient, on_loop, request_bytes, start_server


def args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    return parser.parse_args(list(argv))


def load(tmp_path: Path, text: str, *argv: str) -> Config:
    path = tmp_path / "reactor.toml"
    path.write_text(text)
    return load_config(args("--config", str(path), *argv), {},
                       default_path=str(tmp_path / "absent"))


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return str(info.value)


def test_defaults_and_the_switch_flag(tmp_path: Path) -> None:
    config = load(tmp_path, "")
    assert config.proxy.protocol is False
    assert config.proxy.trusted == ("127.0.0.1", "::1")
    assert config.timeouts.drain_s == 0.0
    assert config.metrics.listen is None
    assert load(tmp_path, "", "--proxy-protocol").proxy.protocol is True
    env = load_config(args(), {"REACTOR_PROXY_TRUSTED": "10.0.0.0/8, 192.168.1.1"},
                      default_path=str(tmp_path / "absent"))
    assert env.proxy.trusted == ("10.0.0.0/8", "192.168.1.1")


def test_values(tmp_path: Path) -> None:
    config = load(tmp_path, '[proxy]\ntrusted = ["10.0.0.0/8", "2001:db8::/32"]\n'
                            'headers = "forwarded"\n[timeouts]\ndrain_s = 5\n'
                            '[health]\nreadyz = "/-/ready"\nlivez = ""\n'
                            '[metrics]\nlisten = "127.0.0.1:9464"\n')
    assert config.proxy.headers == "forwarded"
    assert config.timeouts.drain_s == 5.0
    assert (config.health.readyz, config.health.livez) == ("/-/ready", "")
    assert config.metrics.listen == "127.0.0.1:9464"


@pytest.mark.parametrize(("text", "expected"), [
    ('[proxy]\ntrusted = ["10.0.0.0/33"]', "proxy.trusted: not an address or network"),
    ('[proxy]\ntrusted = "10.0.0.0/8"', 'proxy.trusted: must be a list of'),
    ('[proxy]\nheaders = "both"', "proxy.headers: must be one of"),
    # 0 is the default (no drain): "> 0" sent the operator away from the value they wanted
    ("[timeouts]\ndrain_s = -1", "timeouts.drain_s: must be a number of seconds >= 0, got -1"),
    ("[websocket]\nping_interval_s = nan",
     "websocket.ping_interval_s: must be a number of seconds >= 0, got nan"),
    ('[health]\nreadyz = "readyz"', 'health.readyz: must be a path starting with "/"'),
    ('[metrics]\nlisten = "nowhere"', "metrics.listen:"),
])
def test_errors_are_one_line_naming_the_key(tmp_path: Path, text: str, expected: str) -> None:
    message = error(tmp_path, text)
    assert expected in message and "\n" not in message
    assert message.startswith(str(tmp_path / "reactor.toml") + ":")


def test_reload_applies_proxy_and_health_settings(tmp_path: Path) -> None:
    running = start_server(tmp_path)
    try:
        config = running.server.config
        new = dataclasses.replace(
            config, proxy=dataclasses.replace(config.proxy, protocol=True),
            health=dataclasses.replace(config.health, readyz="/ready"))
        on_loop(running, running.server.apply_config, new)
        with RawClient.to(running) as client:
            client.send(b"PROXY TCP4 203.0.113.7 10.0.0.1 5000 80\r\n"
                        + request_bytes("GET", "/ready"))
            assert client.read_response().status == 200
        assert running.server.http.counters["reloads_total"] == 1
    finally:
        running.stop()
