"""`onnet loadtest` against real servers: short runs, checked for what the report claims."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from onnet._credentials import KIND_SERVICE
from onnet_server.commands.main import main
from onnet_server.loadtest.population import make_books
from onnet_server.loadtest.registration import register_population
from onnet_server.loadtest.runner import (
    PhaseResult,
    RunResult,
    TargetRefused,
    TargetUnsuitable,
    run,
)
from onnet_server.loadtest.settings import Settings, Target
from tests.security import SERVICE_NAME, register_account, security
from tests.servers import ThreadedServer, server_process

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def account_target(server: ThreadedServer, account: str = "tester") -> Target:
    """The server over TLS with an account credential (the default account registered)."""
    if account == "tester":
        register_account(server.target)
    return Target(server.target, security().channel(), security().token(account))


def serious(warnings: list[str]) -> list[str]:
    """The warnings but the harness's CPU: the server runs in this process and counts there."""
    return [warning for warning in warnings if "harness kept" not in warning]


async def load(target: Target, **shape: object) -> RunResult:
    defaults: dict[str, object] = {"concurrency": 4, "batch": 100, "warmup": 0.2}
    if "requests" in shape:
        defaults["duration"] = None
    settings = Settings(**{**defaults, **shape})  # type: ignore[arg-type]
    books = make_books(
        settings.concurrency, settings.batch, settings.match_share, settings.users, settings.seed
    )
    return await run(target, settings, books)


def figures_add_up(phase: PhaseResult, batch: int) -> None:
    """The phase's figures are what its recorded calls add up to.

    How fast the server is, is not checked here: bench/ measures it (README there).
    """
    stats, samples = phase.stats, phase.samples
    codes, latencies = list(samples.codes), list(samples.latencies)
    assert stats.calls == len(codes) == len(samples.offsets) == len(latencies)
    assert stats.ok == codes.count(0)  # 0: OK
    assert stats.ok + sum(stats.errors.values()) == stats.calls
    assert stats.hashes == stats.ok * batch
    ends = [offset + latency for offset, latency in zip(samples.offsets, latencies, strict=True)]
    assert stats.seconds == pytest.approx(max(ends))  # to the last answer
    assert stats.requests_per_second == pytest.approx(stats.ok / stats.seconds)
    assert stats.hashes_per_second == pytest.approx(stats.requests_per_second * batch)
    ok = sorted(latency for latency, code in zip(latencies, codes, strict=True) if code == 0)
    latency = stats.latency
    assert latency is not None
    assert 0 < ok[0] <= latency.p50 <= latency.p90 <= latency.p99 <= latency.p999
    assert latency.p999 <= latency.max == ok[-1]
    shares = {0.5: latency.p50, 0.9: latency.p90, 0.99: latency.p99, 0.999: latency.p999}
    for share, value in shares.items():
        assert value == ok[math.ceil(share * len(ok)) - 1]  # the nearest rank
    assert ok[0] <= latency.mean <= ok[-1]
    # Every measured call, failed and never-sent ones too, only when those exist.
    assert (stats.latency_all is None) == (not stats.errors and not len(samples.unsent))


async def test_a_closed_loop_measures_discover_against_the_ceiling(
    make_server: Callable[..., ThreadedServer],
) -> None:
    server = make_server(bench_ceiling=True)
    result = await load(account_target(server), duration=1.0, ceiling=True)
    assert result.first_syncs == {"OK": 4}
    assert result.ceiling is not None
    for phase in (result.discover, result.ceiling):
        assert phase.stats.ok > 0
        assert phase.stats.errors == {}
        figures_add_up(phase, batch=100)
        # Measured: the calls that began in the 1 s window after the warm-up.
        assert 0 <= min(phase.samples.offsets) <= max(phase.samples.offsets) < 1.0
    ceiling_rate = result.ceiling.stats.requests_per_second
    assert result.ceiling_fraction == pytest.approx(
        result.discover.stats.requests_per_second / ceiling_rate
    )
    assert serious(result.warnings) == []


async def test_the_ceiling_needs_a_server_that_serves_it(
    make_server: Callable[..., ThreadedServer],
) -> None:
    with pytest.raises(TargetUnsuitable, match="--bench-ceiling"):
        await load(account_target(make_server()), requests=5, ceiling=True)


async def test_an_open_loop_keeps_its_timetable(
    make_server: Callable[..., ThreadedServer],
) -> None:
    result = await load(account_target(make_server()), rate=100.0, duration=1.5)
    phase = result.discover
    stats = phase.stats
    assert stats.calls + stats.missed == 150  # the timetable's, whatever the answers
    assert len(phase.samples.unsent) == stats.missed
    assert stats.errors == {}
    figures_add_up(phase, batch=100)
    # Each call is measured from when it was due: every 10 ms from the window's start. The
    # calls never sent (if the server fell behind) are the timetable's last.
    due = [n / 100 for n in range(stats.calls)]
    assert sorted(phase.samples.offsets) == pytest.approx(due, abs=1e-6)
    # Falling behind is the server's or the machine's business, but it must be said.
    behind = [warning for warning in result.warnings if "fell behind" in warning]
    if stats.missed:
        assert behind
    for warning in behind:
        achieved = stats.calls / stats.seconds
        assert f"{achieved:,.0f} of 100 calls/s answered, {stats.missed:,} calls" in warning
    assert [warning for warning in serious(result.warnings) if warning not in behind] == []


async def test_a_populated_registry_matches_the_asked_share(
    make_server: Callable[..., ThreadedServer],
) -> None:
    server = make_server()
    registered = register_population(
        server.target,
        2_000,
        credentials=security().channel(),
        service_token=security().token(SERVICE_NAME, KIND_SERVICE),
    )
    assert (registered.imported, registered.rejected) == (2_000, 0)
    result = await load(account_target(server), requests=40, match_share=0.25, users=2_000)
    stats = result.discover.stats
    assert stats.ok == 40
    assert stats.matches_per_hash == pytest.approx(0.25)
    assert stats.matches_per_request == 25.0


async def test_resyncs_spare_the_quota_and_plain_calls_spend_it(
    make_server: Callable[..., ThreadedServer],
) -> None:
    server = make_server(quota_new_numbers=1_000)
    target = account_target(server)
    resyncing = await load(target, requests=200)
    assert resyncing.first_syncs == {"OK": 4}  # 400 new numbers, paid once
    assert resyncing.discover.stats.ok == 200
    assert resyncing.discover.stats.errors == {}
    plain = await load(target, requests=30, resync=False)
    stats = plain.discover.stats
    assert stats.ok <= 6  # 600 numbers left, 100 a call
    assert stats.errors == {"RESOURCE_EXHAUSTED": 30 - stats.ok}
    assert any("--no-resync" in warning for warning in plain.warnings)


async def test_an_unregistered_account_is_refused_before_the_run(
    make_server: Callable[..., ThreadedServer],
) -> None:
    with pytest.raises(TargetRefused, match="must be a registered user"):
        await load(account_target(make_server(), "stranger"), requests=10)


def run_main(*args: str) -> int:
    with pytest.raises(SystemExit) as exited:
        main(["loadtest", *args])
    code = exited.value.code
    assert isinstance(code, int)
    return code


def test_json_and_png_outputs(
    make_server: Callable[..., ThreadedServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = make_server(bench_ceiling=True)
    register_account(server.target)
    monkeypatch.setenv("ONNET_TLS_CA", str(security().certs.ca_cert))
    monkeypatch.setenv("ONNET_TOKEN", security().token("tester"))
    monkeypatch.setenv("ONNET_SERVICE_TOKEN", security().token(SERVICE_NAME, KIND_SERVICE))
    plot = tmp_path / "latency.png"
    code = run_main(
        "--target", server.target, "--requests", "60", "--warmup", "0.2", "--batch", "50",
        "--concurrency", "3", "--populate", "300", "--match-share", "0.2", "--ceiling",
        "--json", "--plot", str(plot), "--progress", "never",
    )  # fmt: skip
    printed = capsys.readouterr()
    assert code == 0
    assert f"wrote the latency plot to {plot}" in printed.err  # not in the JSON
    document = json.loads(printed.out)
    assert document["population"]["imported"] == 300
    assert document["discover"]["calls"] == 60
    assert document["discover"]["matches_per_hash"] == pytest.approx(0.2)
    assert document["ceiling"]["calls"] == 60
    assert document["ceiling_fraction"] > 0
    assert plot.read_bytes()[:8] == PNG_SIGNATURE


def onnet_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "onnet_server", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.slow
def test_the_command_against_a_development_server() -> None:
    with server_process(None, "--dev", "--bench-ceiling", secure=False) as server:
        result = onnet_cli(
            "loadtest", "--target", server.target, "--duration", "1", "--warmup", "0.2",
            "--concurrency", "2", "--batch", "50", "--populate", "500", "--ceiling",
            "--server-pid", str(server.process.pid), "--progress", "always",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        assert "500/500 users" in result.stderr  # the import's progress
        assert "[Discover] done" in result.stderr
        lines = result.stdout.splitlines()
        assert any(line.startswith("latency p99.9") for line in lines)
        assert any(line.startswith("Discover: ") and "of the ceiling" in line for line in lines)
        cpu = next(line for line in lines if line.startswith("server CPU/request"))
        assert cpu.count(" ms") == 2  # read for both phases
        assert "matches/hash                  0.100" in result.stdout
        assert server.terminate() == 0


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("--target", "127.0.0.1:1", "--timeout", "1", "--requests", "1"), 3, "cannot reach"),
        (("--match-share", "0.5",), 2, "--populate N"),
        (("--server-pid", "0"), 2, "pid 0"),
        (("--duration", "1", "--requests", "1"), 2, "not allowed with"),
    ],
)  # fmt: skip
def test_errors_a_person_understands(args: tuple[str, ...], code: int, message: str) -> None:
    result = onnet_cli("loadtest", *args)
    assert result.returncode == code
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_help_explains_the_quota() -> None:
    result = onnet_cli("loadtest", "--help")
    assert result.returncode == 0
    assert "--no-resync" in result.stdout
    assert "ONNET_QUOTA_NEW_NUMBERS" in result.stdout
