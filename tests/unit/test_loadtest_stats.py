"""The load harness's pure parts: figures, the open-loop timetable, books, CPU readings."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

import onnet
from onnet.v1 import discovery_pb2
from onnet_server.loadtest import plot
from onnet_server.loadtest.population import (
    MAX_UNREGISTERED,
    MAX_USERS,
    import_rows,
    make_books,
    registered_number,
    unregistered_number,
)
from onnet_server.loadtest.report import Report, _rows, as_json, render_table
from onnet_server.loadtest.runner import PhaseResult, RunResult, VirtualClient
from onnet_server.loadtest.schedule import Timetable
from onnet_server.loadtest.server_cpu import (
    CpuReadError,
    MetricsCpu,
    ProcessCpu,
    ServerCpu,
    parse_stat,
)
from onnet_server.loadtest.settings import Settings
from onnet_server.loadtest.stats import Samples, percentile, summarize

OK = grpc.StatusCode.OK


def ordered(values: list[float]) -> np.ndarray[tuple[int], np.dtype[np.float64]]:
    return np.sort(np.array(values, dtype=np.float64))


def test_percentiles_are_nearest_rank() -> None:
    hundred = ordered([float(n) for n in range(1, 101)])
    assert [percentile(hundred, q) for q in (0.5, 0.9, 0.99, 0.999, 1.0)] == [
        50.0,
        90.0,
        99.0,
        100.0,
        100.0,
    ]
    thousand = ordered([float(n) for n in range(1, 1001)])
    assert percentile(thousand, 0.999) == 999.0
    assert percentile(ordered([7.0]), 0.5) == 7.0
    with pytest.raises(ValueError, match="no values"):
        percentile(ordered([]), 0.5)


def filled_samples() -> Samples:
    samples = Samples()
    for n in range(10):
        # Ten successful calls of 100 hashes with 25 matches, 1 to 10 ms, one every 0.1 s.
        samples.add(n * 0.1, (n + 1) / 1000, OK, 100, 25)
    samples.add(0.95, 0.05, grpc.StatusCode.RESOURCE_EXHAUSTED, 100, 0)
    samples.add(0.96, 0.002, grpc.StatusCode.RESOURCE_EXHAUSTED, 100, 0)
    samples.add(0.97, 0.001, grpc.StatusCode.UNAVAILABLE, 100, 0)
    return samples


def test_rates_count_successful_calls_over_the_window_to_the_last_answer() -> None:
    stats = summarize("Discover", filled_samples(), harness_cpu=0.5, server_cpu=0.26)
    assert stats.calls == 13
    assert stats.ok == 10
    assert stats.seconds == pytest.approx(1.0)  # the call at 0.95 s answered at 1.0 s
    assert stats.requests_per_second == pytest.approx(10.0)
    assert stats.hashes_per_second == pytest.approx(1000.0)
    assert stats.matches_per_request == 25.0
    assert stats.matches_per_hash == 0.25
    assert stats.harness_cores == pytest.approx(0.5)
    # Server CPU is divided over the successful calls only: cheap refusals would flatter it.
    assert stats.server_cpu_ms_per_request == pytest.approx(26.0)
    assert stats.server_cpu_ms_per_1000_hashes == pytest.approx(260.0)
    assert stats.latency is not None
    assert stats.latency.p50 == pytest.approx(0.005)  # successful calls only
    assert stats.latency.max == pytest.approx(0.010)


def test_errors_are_counted_by_status_code() -> None:
    stats = summarize("Discover", filled_samples(), harness_cpu=0.0)
    assert stats.errors == {"RESOURCE_EXHAUSTED": 2, "UNAVAILABLE": 1}
    assert stats.server_cpu_ms_per_request is None


def test_a_phase_without_a_successful_call_has_no_latency() -> None:
    samples = Samples()
    samples.add(0.0, 0.01, grpc.StatusCode.PERMISSION_DENIED, 10, 0)
    stats = summarize("Discover", samples, harness_cpu=0.0)
    assert stats.latency is None
    assert stats.requests_per_second == 0.0
    assert stats.matches_per_hash == 0.0


def fake_result() -> RunResult:
    discover = filled_samples()
    ceiling = Samples()
    for n in range(40):
        ceiling.add(n * 0.025, 0.025, OK, 100, 0)
    return RunResult(
        max_batch=10_000,
        quota_before=20_000,
        first_syncs={"OK": 8},
        discover=PhaseResult(summarize("Discover", discover, harness_cpu=0.1), discover),
        ceiling=PhaseResult(summarize("Ceiling", ceiling, harness_cpu=0.1), ceiling),
        warnings=["something to know"],
    )


def test_the_json_document_has_every_figure() -> None:
    settings = Settings(concurrency=8, batch=100, ceiling=True)
    document = as_json(Report("127.0.0.1:50051", settings, fake_result()))
    assert json.loads(json.dumps(document)) == document
    assert set(document) == {
        "target", "settings", "population", "server", "first_syncs", "discover", "ceiling",
        "ceiling_order", "ceiling_fraction", "server_cpu_source", "warnings",
    }  # fmt: skip
    discover = document["discover"]
    assert isinstance(discover, dict)
    assert set(discover["latency_ms"]) == {"p50", "p90", "p99", "p99.9", "max", "mean"}
    assert discover["errors"] == {"RESOURCE_EXHAUSTED": 2, "UNAVAILABLE": 1}
    assert discover["requests_per_second"] == 10.0
    assert discover["matches_per_hash"] == 0.25
    assert document["ceiling_fraction"] == pytest.approx(10 / 40)
    assert document["settings"]["loop"] == "closed"  # type: ignore[index]


def test_the_table_states_the_ceiling_fraction_and_the_errors() -> None:
    text = render_table(Report("127.0.0.1:50051", Settings(ceiling=True), fake_result()))
    assert "Discover: 0.25 of the ceiling's requests/s" in text
    assert "measured before Discover" in text
    assert "RESOURCE_EXHAUSTED" in text
    assert "latency p99.9" in text
    assert "something to know" in text


def test_the_timetable_is_fixed_whatever_the_answers() -> None:
    table = Timetable.for_run(100.0, 50.0, 0.5, duration=2.0)
    assert table.warmup_calls == 25
    assert table.measured == 100
    assert table.total == 125
    assert [table.due(n) for n in range(3)] == [100.0, 100.02, 100.04]
    assert table.window_start == pytest.approx(100.5)
    assert table.window_end == pytest.approx(102.5)
    assert not table.is_measured(24)
    assert table.is_measured(25)
    assert table.is_measured(124)
    assert not table.is_measured(125)
    counted = Timetable.for_run(0.0, 1000.0, 0.0, requests=7)
    assert (counted.warmup_calls, counted.measured, counted.total) == (0, 7, 7)


@pytest.mark.parametrize(
    ("batch", "share", "registered"), [(100, 0.25, 25), (7, 0.5, 4), (10, 0, 0)]
)
def test_books_hold_exactly_the_match_share_and_no_duplicates(
    batch: int, share: float, registered: int
) -> None:
    users = 2_000
    population = {onnet.contact_hash(registered_number(i)) for i in range(users)}
    books = make_books(5, batch, share, users, seed=3)
    assert len(books) == 5
    for book in books:
        hashes = [book.hashes[i : i + 32] for i in range(0, len(book.hashes), 32)]
        assert len(hashes) == batch == book.size
        assert len(set(hashes)) == batch
        assert sum(h in population for h in hashes) == registered == book.registered
    assert len({book.hashes for book in books}) == 5


def test_books_are_deterministic_from_the_seed() -> None:
    assert make_books(3, 50, 0.2, 1_000, seed=1) == make_books(3, 50, 0.2, 1_000, seed=1)
    assert make_books(3, 50, 0.2, 1_000, seed=1) != make_books(3, 50, 0.2, 1_000, seed=2)
    # A client's book does not depend on how many clients there are.
    assert make_books(2, 50, 0.2, 1_000, seed=1) == make_books(3, 50, 0.2, 1_000, seed=1)[:2]


def test_a_book_cannot_need_more_users_than_the_population_has() -> None:
    with pytest.raises(ValueError, match="population has 10 users"):
        make_books(1, 100, 0.5, 10, seed=1)


def test_population_numbers_are_valid_and_the_ranges_never_meet() -> None:
    ends = [0, 1, 7_999_999, 8_000_000, MAX_USERS - 1]
    for index in ends:
        number = registered_number(index)
        assert onnet.normalize(number) == number
    for index in [0, 7_999_999, 8_000_000, MAX_UNREGISTERED - 1]:
        number = unregistered_number(index)
        assert onnet.normalize(number) == number
    registered = {registered_number(i)[:5] for i in ends}
    unregistered = {unregistered_number(i)[:5] for i in (0, 8_000_000, MAX_UNREGISTERED - 1)}
    assert registered.isdisjoint(unregistered)
    assert len({registered_number(i) for i in range(0, MAX_USERS, 999_983)}) == len(
        range(0, MAX_USERS, 999_983)
    )
    with pytest.raises(ValueError, match="out of range"):
        registered_number(MAX_USERS)
    rows = list(import_rows(3))
    assert (rows[0].user_id, rows[0].e164, len(rows)) == ("loadtest-0000000", "+16502000000", 3)


def test_a_virtual_client_resyncs_with_its_last_token() -> None:
    book = make_books(1, 10, 0.0, 0, seed=1)[0]
    client = VirtualClient(book, resync=True)
    first = client.request()
    assert (first.hashes, first.token, first.previous_hashes) == (book.hashes, b"", b"")
    client.answered(discovery_pb2.DiscoverResponse(token=b"t1"))
    again = client.request()  # the difference form: the book once, nothing changed
    assert (again.hashes, again.token, again.previous_hashes) == (book.hashes, b"t1", b"")
    assert (again.added_hashes, again.removed_hashes) == (b"", b"")
    client.answered(discovery_pb2.DiscoverResponse(token=b"t2"))
    assert client.request().token == b"t2"
    plain = VirtualClient(book, resync=False)
    plain.answered(discovery_pb2.DiscoverResponse(token=b"t1"))
    assert plain.request().token == b""


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"concurrency": 0}, "--concurrency"),
        ({"rate": 0.0}, "--rate"),
        ({"duration": None}, "--duration or --requests"),
        ({"requests": 5}, "--duration or --requests"),
        ({"match_share": 1.5}, "--match-share"),
        ({"match_share": 0.5}, "--populate N"),
        ({"batch": 0}, "--batch"),
    ],
)
def test_settings_that_cannot_work_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings(**changes).check()  # type: ignore[arg-type]


def test_cpu_time_is_read_from_proc_stat() -> None:
    line = "42 (a (strange) name) S 1 2 3 4 5 6 7 8 9 10 250 150 0 0 20 0 1 0\n"
    assert parse_stat(line, 100) == 4.0
    own = ProcessCpu(os.getpid())
    assert own.seconds() > 0
    with pytest.raises(CpuReadError, match="pid"):
        ProcessCpu(2**22 + 12345).seconds()


def test_one_threads_cpu_time_is_its_own() -> None:
    """The main thread's time, not the process's: a busy other thread does not count."""
    pid = os.getpid()
    main, whole = ProcessCpu(pid, thread=pid), ProcessCpu(pid)
    main_before, whole_before = main.seconds(), whole.seconds()
    spin = threading.Thread(target=busy_for, args=(0.3,))
    spin.start()
    spin.join()
    # The other thread's 0.3 s show in the process's time, not in the main thread's.
    assert whole.seconds() - whole_before >= 0.2
    assert main.seconds() - main_before < 0.1
    with pytest.raises(CpuReadError, match="thread 1"):
        ProcessCpu(pid, thread=1).seconds()


def busy_for(seconds: float) -> None:
    """Spend ``seconds`` of this thread's CPU time."""
    start = time.thread_time()
    while time.thread_time() - start < seconds:
        pass


class FixedCpu(Collector):
    """A server's ``process_cpu_seconds_total`` that stays at one known value."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def collect(self) -> Iterator[Metric]:
        # A counter's NAME_created comes first here: a reader that took any line starting
        # with the name would read a time of day, not CPU time.
        yield GaugeMetricFamily("process_cpu_seconds_created", "created", value=1.7e9)
        yield CounterMetricFamily("process_cpu_seconds", "CPU time", value=self.seconds)


def test_cpu_time_is_read_from_a_metrics_endpoint() -> None:
    registry = CollectorRegistry()
    registry.register(FixedCpu(1234.56))
    server, thread = start_http_server(0, "127.0.0.1", registry=registry)
    try:
        metrics = MetricsCpu(f"http://127.0.0.1:{server.server_port}/metrics")
        own = ProcessCpu(os.getpid())
        assert metrics.seconds() == 1234.56
        # The sum of both: this process's part grows, so it is bracketed by two readings.
        own_before = own.seconds()
        total = ServerCpu([metrics, own]).seconds()
        own_after = own.seconds()
        assert total is not None
        assert 1234.56 + own_before <= total <= 1234.56 + own_after
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    with pytest.raises(CpuReadError, match="not an http"):
        MetricsCpu("file:///etc/passwd")
    assert ServerCpu([]).seconds() is None


def test_plotting_without_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(plot.PlotUnavailableError, match=r"pip install 'onnet\[loadtest\]'"):
        plot.check_plotting()


def test_the_plot_is_a_png(tmp_path: Path) -> None:
    path = tmp_path / "run.png"
    plot.write_plot(path, fake_result(), "a title")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_latency_of_all_calls_keeps_the_slowest_ones() -> None:
    """Failed calls count with their time to failure, and never-sent ones with their least
    wait: dropping them would hide the very wait clients saw under overload."""
    samples = filled_samples()  # ok calls take 1 to 10 ms; a failure took 50 ms
    ok_only = summarize("Discover", samples, harness_cpu=0.0)
    assert ok_only.latency is not None
    assert ok_only.latency.max == pytest.approx(0.010)
    assert ok_only.latency_all is not None
    assert ok_only.latency_all.max == pytest.approx(0.05)
    samples.add_unsent(0.8)  # never sent: would have waited at least 800 ms
    with_unsent = summarize("Discover", samples, harness_cpu=0.0, missed=1)
    assert with_unsent.latency_all is not None
    assert with_unsent.latency_all.max == pytest.approx(0.8)
    assert with_unsent.latency == ok_only.latency  # the successful calls' figures stay


def test_all_calls_equal_the_successful_ones_when_nothing_failed() -> None:
    samples = Samples()
    for n in range(5):
        samples.add(n * 0.1, 0.001 * (n + 1), grpc.StatusCode.OK, 10, 1)
    stats = summarize("Discover", samples, harness_cpu=0.0)
    assert stats.latency_all is None
    rows = dict(_rows(stats))
    assert rows["p99, all calls"] == rows["latency p99"]
