"""Index memory measured from outside, one base per host, and cold start (issue 12 items 2-4).

A real Redis is filled directly with N records as the registry writes them (8-character user
ids, 16-byte fingerprints, a 52-byte private-mode entry each: the layout of
stores/redis_layout.py), then real `onnet serve --redis` processes are measured:

- **per user**: PSS (proportional set size, /proc/PID/smaps_rollup) of a process that
  loaded the registry, minus that of one serving an empty registry, divided by N. PSS
  counts a page shared by k processes as 1/k to each, so it adds up honestly over a host;
- **the index alone**: the bytes of the base's arrays by part (the hashed-mode part and the
  private-mode entries), as the process reports them;
- **workers**: the summed PSS of `--workers 2` (its parent and both workers) against one
  process, both loaded;
- **cold start**: seconds from starting a process on a host whose base file is current
  until it serves, against one that loads Redis whole;
- **visibility**: a registration through one worker until another finds it.

The suite runs it at 2,000 users as a smoke test; ``make bench`` at 1,000,000 and, with
``ONNET_BENCH_INDEX_10M=1``, also at 10,000,000 (about 10 minutes, 3 GB of Redis).
"""

from __future__ import annotations

import os
import secrets
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from bench.bench_lookup import USERS
from onnet_server.stores.index_files import current_base, read_base
from onnet_server.stores.redis_layout import BUCKETS, GROUPS, Layout
from tests.redis_servers import RedisProcess, redis_server
from tests.security import registry_client, security
from tests.servers import ServerProcess, free_port, server_process

FULL = bool(os.environ.get("ONNET_BENCH_USERS"))
SIZES = [USERS] + ([10_000_000] if os.environ.get("ONNET_BENCH_INDEX_10M") else [])
ID_LENGTH = 8
ENTRY = 52  # an 8-character id's sealed entry: tag, nonce, padded id, AEAD tag
PEPPER = secrets.token_hex(32)  # one pepper for every process: the registry records it


def pss(pid: int) -> int:
    """Proportional set size of ``pid`` in bytes."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no Pss line")


def pss_parts(pid: int) -> str:
    """Anonymous and file-backed PSS of ``pid``, in MiB, for the report."""
    parts = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        name = line.split(":")[0]
        if name in ("Pss_Anon", "Pss_File", "Pss_Shmem"):
            parts[name] = int(line.split()[1]) // 1024
    return " ".join(f"{name[4:].lower()} {size}" for name, size in parts.items())


def index_parts(directory: Path) -> dict[str, int]:
    """Bytes of the host's current base file's arrays: hashed mode, its ids, private mode."""
    path = current_base(directory)
    assert path is not None, "no base file was published"
    parts = {"hashed": 0, "ids": 0, "private": 0}
    for name, array in read_base(path).base.arrays.items():
        parts["private" if name.startswith("entry_") else "hashed"] += array.nbytes
        parts["ids"] += array.nbytes if name == "ids" else 0
    return parts


def children(pid: int) -> list[int]:
    """The child processes of ``pid``."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(child) for child in text]
    return found


def fill(client: redis.Redis, count: int, prefix: str = "onnet") -> None:
    """Write ``count`` records straight into the registry's hashes, pipelined."""
    layout = Layout(prefix)
    rng = np.random.default_rng(11)
    step = 200_000
    version = (1_700_000_000_000_000).to_bytes(7, "big")
    for start in range(0, count, step):
        n = min(step, count - start)
        fingerprints = rng.bytes(16 * n)
        entries = rng.bytes((4 + ENTRY) * n)
        pipe = client.pipeline(transaction=False)
        for i in range(n):
            user = f"u{start + i:0{ID_LENGTH - 1}d}"
            group, bucket = layout.group_of(user)
            value = (
                fingerprints[16 * i : 16 * i + 16]
                + b"\x01"
                + version
                + entries[(4 + ENTRY) * i : (4 + ENTRY) * (i + 1)]
            )
            pipe.hset(layout.bucket_key(group, bucket), user, value)
            if i % 5000 == 4999:
                pipe.execute()
                pipe = client.pipeline(transaction=False)
        pipe.execute()


def env_for(redis_url: str, index_dir: Path | None, prefix: str = "onnet") -> dict[str, str]:
    env = {
        "ONNET_REDIS_URL": redis_url,
        "ONNET_REDIS_PREFIX": prefix,
        "ONNET_PEPPER": PEPPER,
    }
    if index_dir is not None:
        env["ONNET_INDEX_DIR"] = str(index_dir)
    return env


def wait_serving(server: ServerProcess, count: int = 1, timeout: float = 1800) -> float:
    started = time.monotonic()
    while server.log().count("onnet serving on") < count:
        assert server.process.poll() is None, server.log()
        assert time.monotonic() - started < timeout, server.log()
        time.sleep(0.05)
    return time.monotonic() - started


def settle(pid: int) -> int:
    """PSS once it stops moving (a load leaves garbage that is collected over a moment)."""
    last, same = -1, 0
    while same < 3:
        time.sleep(0.5)
        now = pss(pid)
        same = same + 1 if abs(now - last) < (1 << 20) else 0
        last = now
    return last


@pytest.fixture(scope="module")
def redis_for_bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    with redis_server(tmp_path_factory.mktemp("redis-index"), "--maxmemory", "0") as server:
        yield server


@pytest.mark.slow
@pytest.mark.parametrize("count", SIZES)
def test_memory_per_user_workers_and_cold_start(
    redis_for_bench: RedisProcess, tmp_path: Path, count: int
) -> None:
    client = redis_for_bench.client()
    client.flushall()
    started = time.monotonic()
    fill(client, count)
    filled = time.monotonic() - started
    # An empty registry under another prefix: the same process, with nothing to hold.
    with server_process(env_for(redis_for_bench.url, None, "empty"), secure=True) as empty:
        empty_pss = settle(empty.process.pid)
    index_dir = tmp_path / "index"
    with server_process(env_for(redis_for_bench.url, index_dir), wait=False) as loaded:
        load_seconds = wait_serving(loaded)
        loaded_pss = settle(loaded.process.pid)
        loaded_parts = pss_parts(loaded.process.pid)
        arrays = index_parts(index_dir)
    # A process on a host whose base file is current: it maps it and catches up.
    with server_process(env_for(redis_for_bench.url, index_dir), wait=False) as cold:
        cold_seconds = wait_serving(cold)
        cold_pss = settle(cold.process.pid)
    # Two workers on the same host: the parent and both workers, summed.
    port = free_port()
    workers_env = {**env_for(redis_for_bench.url, tmp_path / "index2"), "ONNET_WORKERS": "2"}
    with server_process(workers_env, "--listen", f"127.0.0.1:{port}", wait=False) as pair:
        wait_serving(pair, 2)
        time.sleep(2)
        workers = children(pair.process.pid)
        supervisor_pss = settle(pair.process.pid)
        workers_pss = [settle(pid) for pid in workers]
        pair_pss = supervisor_pss + sum(workers_pss)
        pair_parts = [pss_parts(pid) for pid in [pair.process.pid, *workers]]
        visibility = _visibility(f"127.0.0.1:{port}", 50 if FULL else 5)
    # What the shared index costs: each worker above an empty process (an interpreter that
    # any server of N processes has N of), plus the supervisor whole.
    above = supervisor_pss + sum(worker - empty_pss for worker in workers_pss)
    per_user = (loaded_pss - empty_pss) / count
    cold_per_user = (cold_pss - empty_pss) / count
    lines = [
        f"\n{count:,} users (filled in {filled:.1f} s); empty process {empty_pss / 2**20:.0f} MiB",
        f"  loaded from Redis: {load_seconds:.1f} s, {per_user:.1f} B per user (PSS; MiB: "
        f"{loaded_parts})",
        f"  mapped from the base file (cold start): {cold_seconds:.2f} s, "
        f"{cold_per_user:.1f} B per user",
        f"  --workers 2: supervisor {supervisor_pss / 2**20:.0f} MiB; above an empty process "
        f"each, the workers and the supervisor hold {above / count:.1f} B per user, "
        f"{above / max(1, loaded_pss - empty_pss):.2f}x one loaded process (all PSS summed: "
        f"{pair_pss / max(1, loaded_pss):.2f}x one loaded process's whole PSS; MiB by process: "
        f"{'; '.join(pair_parts)})",
        f"  visibility across workers: p50 {statistics.median(visibility) * 1000:.0f} ms, "
        f"max {max(visibility) * 1000:.0f} ms",
    ]
    lines.append(
        f"  the base's arrays: hashed mode {arrays['hashed'] / count:.1f} B per user (of which "
        f"the ids' own bytes {arrays['ids'] / count:.1f}), private-mode entries "
        f"{arrays['private'] / count:.1f} B per user"
    )
    print("\n".join(lines))
    assert loaded_pss > empty_pss


def _visibility(target: str, samples: int) -> list[float]:
    """Seconds from Register (on some worker) until Discover (on new connections) finds it."""
    import onnet

    times = []
    with registry_client(target) as registry:
        registry.register("watcher", "+12025550199", discoverable=False)
        for i in range(samples):
            number = f"+1202555{1000 + i:04d}"
            started = time.monotonic()
            registry.register(f"seen{i}", number)
            while True:
                token = security().token("watcher")
                with onnet.Client(target, credentials=security().channel(), token=token) as c:
                    try:
                        if c.discover([number]).matches:
                            break
                    except onnet.PermissionDeniedError:
                        # A worker that has not seen the watcher's registration yet (which
                        # came before this one) refuses it as an account it does not know.
                        pass
                assert time.monotonic() - started < 10
            times.append(time.monotonic() - started)
    return times


_ = (BUCKETS, GROUPS)
