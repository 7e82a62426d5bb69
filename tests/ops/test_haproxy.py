"""Real HAProxy (conf/haproxy.cfg, send-proxy-v2, checks on /readyz) in front of two reactor
processes on loopback: the client address HAProxy saw reaches the access log, and a rolling
restart under a steady load fails no request. And HAProxy re-encrypting to a TLS listener
with `send-proxy-v2`: the header precedes each handshake, checks included."""

from __future__ import annotations

import http.client
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ops.serverproc import (
    REPO,
    ServeProcess,
    base_config,
    read_json_lines,
    wait_until,
    write_config,
)

HAPROXY = shutil.which("haproxy") or (
    "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
pytestmark = pytest.mark.skipif(
    HAPROXY is None, reason="haproxy is not installed (Debian package `haproxy`; "
                            "`make test-tools` installs it as root)")
CLIENT_SOURCE = "127.0.0.2"  # the load's own loopback address, so it differs from HAProxy's
DRAIN_S = 2.0
UP_TIMEOUT_S = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Instance:
    """One reactor process behind HAProxy on a fixed port; restartable."""

    def __init__(self, tmp_path: Path, name: str, port: int,
                 **sections: dict[str, object]) -> None:
        self.dir = tmp_path / name
        self.dir.mkdir()
        self.port = port
        self.sections = sections  # more config (a TLS listener)
        self.generation = 0
        self.proc: ServeProcess | None = None

    def access_log(self, generation: int | None = None) -> Path:
        return self.dir / f"access-{self.generation if generation is None else generation}.log"

    def start(self) -> None:
        self.generation += 1
        config = base_config(
            self.dir, server={"listen": [f"127.0.0.1:{self.port}"]},
            proxy={"protocol": True, "trusted": ["127.0.0.1"]},
            timeouts={"drain_s": DRAIN_S}, log={"access": str(self.access_log())},
            **self.sections)
        path = write_config(self.dir / "reactor.toml", config)
        self.proc = ServeProcess(["--config", str(path)], cwd=self.dir)
        self.proc.wait_event("listening")

    def requests(self) -> list[dict]:
        return [line for line in read_json_lines(self.access_log())
                if line.get("event") == "request"]

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait_event("draining")
        assert self.proc.wait(DRAIN_S + 15) == 0
        self.proc.stop()


class HAProxy:
    def __init__(self, tmp_path: Path, front: int, backends: list[int],
                 text: str | None = None) -> None:
        """conf/haproxy.cfg (or `text`, written the same way) on these ports."""
        if text is None:
            text = (REPO / "conf" / "haproxy.cfg").read_text()
        self.socket = tmp_path / "haproxy.sock"
        replaced = (text.replace("/run/haproxy/reactor.sock", str(self.socket))
                    .replace("127.0.0.1:8080", f"127.0.0.1:{front}")
                    .replace("127.0.0.1:8001", f"127.0.0.1:{backends[0]}")
                    .replace("127.0.0.1:8002", f"127.0.0.1:{backends[-1]}"))
        assert replaced.count(f":{backends[-1]}") == 1
        config = tmp_path / "haproxy.cfg"
        config.write_text(replaced)
        assert HAPROXY is not None
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", str(config)], cwd=tmp_path,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        self.port = front

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(self.socket))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def stat(self, server: str, column: str) -> str:
        lines = self.command("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        for line in lines[1:]:
            fields = line.split(",")
            if len(fields) > 1 and fields[1] == server:
                return fields[header.index(column)]
        raise AssertionError(f"no server {server} in show stat")

    def wait_status(self, server: str, status: str) -> None:
        def ok() -> bool:
            if self.proc.poll() is not None:
                assert self.proc.stderr is not None
                raise AssertionError(f"haproxy exited: {self.proc.stderr.read().decode()}")
            try:
                return self.stat(server, "status") == status
            except OSError:
                return False
        wait_until(ok, UP_TIMEOUT_S, f"HAProxy to mark {server} {status}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


class Load:
    """Clients sending GET /echo/N through HAProxy back to back until stopped; every
    exception or non-200 answer is a failed request."""

    def __init__(self, port: int, clients: int = 4) -> None:
        self.port = port
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True)
                         for n in range(clients)]
        for thread in self._threads:
            thread.start()

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10,
                                          source_address=(CLIENT_SOURCE, 0))

    def _run(self, number: int) -> None:
        connection = self._connect()
        count = 0
        while not self._stop.is_set():
            count += 1
            try:
                connection.request("GET", f"/echo/c{number}-{count}")
                response = connection.getresponse()
                body = response.read()
                good = response.status == 200 and body == f"c{number}-{count}".encode()
                failure = None if good else f"{response.status} {body[:80]!r}"
            except (OSError, http.client.HTTPException) as exc:
                failure = repr(exc)
                connection.close()
                connection = self._connect()
            with self._lock:
                if failure is None:
                    self.ok += 1
                else:
                    self.failures.append(failure)
            time.sleep(0.002)
        connection.close()

    def total(self) -> int:
        with self._lock:
            return self.ok + len(self.failures)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[HAProxy, list[Instance]]]:
    ports = [free_port(), free_port()]
    instances = [Instance(tmp_path, f"r{n + 1}", port) for n, port in enumerate(ports)]
    started: list[Instance] = []
    haproxy = None
    try:
        for instance in instances:
            instance.start()
            started.append(instance)
        haproxy = HAProxy(tmp_path, free_port(), ports)
        haproxy.wait_status("reactor1", "UP")
        haproxy.wait_status("reactor2", "UP")
        yield haproxy, instances
    finally:
        if haproxy is not None:
            haproxy.close()
        for instance in started:
            if instance.proc is not None:
                instance.proc.stop()


def test_access_log_shows_the_client_address_haproxy_saw(
        cluster: tuple[HAProxy, list[Instance]]) -> None:
    haproxy, instances = cluster
    for n in range(4):  # round robin: both instances get some
        connection = http.client.HTTPConnection("127.0.0.1", haproxy.port, timeout=10,
                                                source_address=(CLIENT_SOURCE, 0))
        connection.request("GET", f"/echo/{n}")
        assert connection.getresponse().read() == str(n).encode()
        connection.close()
    for instance in instances:
        lines = wait_until(instance.requests, what=f"requests in {instance.access_log()}")
        for line in lines:
            assert line["client_addr"] == CLIENT_SOURCE  # from the PROXY v2 header
            assert line["peer_addr"] == "127.0.0.1"  # HAProxy itself
        # HAProxy's own checks (PROXY v2 LOCAL) are answered but not logged
        assert all(line["path"].startswith("/echo/") for line in lines)


def test_rolling_restart_under_load_fails_no_request(
        cluster: tuple[HAProxy, list[Instance]]) -> None:
    haproxy, instances = cluster
    load = Load(haproxy.port)
    try:
        wait_until(lambda: load.total() > 50, what="the load to run")
        for instance, name in zip(instances, ("reactor1", "reactor2"), strict=True):
            instance.stop()  # SIGTERM: drain (503 on /readyz), then the graceful stop
            served_before = load.total()
            instance.start()
            haproxy.wait_status(name, "UP")
            wait_until(instance.requests, UP_TIMEOUT_S, f"{name} to serve again")
            assert load.total() > served_before
        time.sleep(0.5)
    finally:
        load.stop()
    retries = [int(haproxy.stat(name, "wretr") or 0) for name in ("reactor1", "reactor2")]
    redispatches = [int(haproxy.stat(name, "wredis") or 0) for name in ("reactor1", "reactor2")]
    print(f"rolling restart: {load.ok} requests ok, {len(load.failures)} failed;"
          f" HAProxy retries {retries}, redispatches {redispatches}")
    assert load.failures == []
    assert load.ok > 100
    # and none needed HAProxy's safety net: without the drain the same restart shows up
    # here as hundreds of redispatches (or, with retries off, as failed requests)
    assert retries == [0, 0] and redispatches == [0, 0]


# HAProxy re-encrypting to reactor's TLS listener: `ssl` to the server, the PROXY v2 header
# first (`send-proxy-v2`), on the checks too (a LOCAL header, then a TLS handshake).
TLS_BACKEND_CFG = """
global
    stats socket /run/haproxy/reactor.sock mode 600 level admin

defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
    timeout check 2s

frontend www
    bind 127.0.0.1:8080
    default_backend reactor

backend reactor
    option httpchk
    http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host reactor
    http-check expect status 200
    server reactor1 127.0.0.1:8001 ssl verify required ca-file CA_FILE sni str(localhost) \
        alpn http/1.1 send-proxy-v2 check check-send-proxy inter 500ms rise 1
"""


def test_send_proxy_v2_to_a_tls_listener(tmp_path: Path) -> None:
    from tests.conn.tlskit import Certs  # trustme: only the TLS tests need it

    certs = Certs(tmp_path / "certs")
    cert, key = certs.issue("server", "localhost", "127.0.0.1")
    tls_port = free_port()
    instance = Instance(tmp_path, "r1", free_port(),
                        tls={"listen": [f"127.0.0.1:{tls_port}"], "cert": str(cert),
                             "key": str(key)})
    instance.start()
    haproxy = None
    try:
        haproxy = HAProxy(tmp_path, free_port(), [tls_port],
                          TLS_BACKEND_CFG.replace("CA_FILE", str(certs.ca_file)))
        haproxy.wait_status("reactor1", "UP")  # its checks: LOCAL header, TLS, /readyz
        for n in range(3):
            connection = http.client.HTTPConnection("127.0.0.1", haproxy.port, timeout=10,
                                                    source_address=(CLIENT_SOURCE, 0))
            connection.request("GET", f"/echo/{n}")
            assert connection.getresponse().read() == str(n).encode()
            connection.close()
        lines = wait_until(lambda: [x for x in instance.requests()
                                    if x["path"].startswith("/echo/")],
                           what="requests in the access log")
        for line in lines:
            assert line["client_addr"] == CLIENT_SOURCE  # from the PROXY v2 header
            assert line["peer_addr"] == "127.0.0.1"  # HAProxy itself
            assert line["scheme"] == "https" and line["tls_version"].startswith("TLS")
        refused = [x for x in read_json_lines(instance.access_log())
                   if x.get("event") in ("proxy_rejected", "tls-handshake-failed")]
        assert refused == []
    finally:
        if haproxy is not None:
            haproxy.close()
        assert instance.proc is not None
        instance.proc.stop()
