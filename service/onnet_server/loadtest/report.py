"""A run's figures for people (a table) and for programs (one JSON document)."""

from __future__ import annotations

from dataclasses import dataclass

from onnet_server.loadtest.runner import CEILING_ORDER, RunResult
from onnet_server.loadtest.settings import Settings
from onnet_server.loadtest.stats import Latency, PhaseStats

__all__ = ["Population", "Report", "as_json", "describe_settings", "render_table"]

_PERCENTILES = (("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p999", "p99.9"))
_OPEN_LOOP_NOTE = (
    "in an open loop both phases are offered the same rate, so compare their latency "
    "rather than this fraction"
)


@dataclass(frozen=True)
class Population:
    """The users this run registered (``--populate``)."""

    users: int
    imported: int
    rejected: int
    seconds: float


@dataclass(frozen=True)
class Report:
    """Everything the outputs show."""

    target: str
    settings: Settings
    result: RunResult
    population: Population | None = None
    server_cpu_source: str | None = None
    """Where the server's CPU time was read (pids, URLs), or None."""


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _latency_json(latency: Latency | None) -> dict[str, float] | None:
    if latency is None:
        return None
    found = {label: round(getattr(latency, name) * 1000, 4) for name, label in _PERCENTILES}
    found["max"] = round(latency.max * 1000, 4)
    found["mean"] = round(latency.mean * 1000, 4)
    return found


def _phase_json(stats: PhaseStats) -> dict[str, object]:
    return {
        "method": stats.method,
        "calls": stats.calls,
        "ok": stats.ok,
        "errors": stats.errors,
        "seconds": round(stats.seconds, 4),
        "requests_per_second": round(stats.requests_per_second, 2),
        "hashes_per_second": round(stats.hashes_per_second, 1),
        "matches_per_request": round(stats.matches_per_request, 4),
        "matches_per_hash": round(stats.matches_per_hash, 6),
        "latency_ms": _latency_json(stats.latency),
        # Every measured call: failed ones with their time to failure, never-sent ones with
        # the least they would have waited. Null when every call succeeded and was sent.
        "latency_all_calls_ms": _latency_json(stats.latency_all),
        "server_cpu_seconds": _rounded(stats.server_cpu, 3),
        "server_cpu_ms_per_request": _rounded(stats.server_cpu_ms_per_request, 4),
        "server_cpu_ms_per_1000_hashes": _rounded(stats.server_cpu_ms_per_1000_hashes, 4),
        "harness_cores": round(stats.harness_cores, 3),
        "missed": stats.missed,
        "max_late_ms": round(stats.max_late * 1000, 3),
    }


def as_json(report: Report) -> dict[str, object]:
    """The report as one JSON-ready document (latencies in milliseconds)."""
    settings, result = report.settings, report.result
    population = None
    if report.population is not None:
        population = {
            "users": report.population.users,
            "imported": report.population.imported,
            "rejected": report.population.rejected,
            "seconds": round(report.population.seconds, 3),
        }
    return {
        "target": report.target,
        "settings": {
            "loop": "open" if settings.open_loop else "closed",
            "concurrency": settings.concurrency,
            "rate": settings.rate,
            "max_in_flight": settings.max_in_flight if settings.open_loop else None,
            "duration": settings.duration,
            "requests": settings.requests,
            "warmup": settings.warmup,
            "batch": settings.batch,
            "match_share": settings.match_share,
            "users": settings.users,
            "seed": settings.seed,
            "resync": settings.resync,
            "connections": settings.connections,
            "timeout": settings.timeout,
        },
        "population": population,
        "server": {"max_batch": result.max_batch, "quota_before": result.quota_before},
        "first_syncs": result.first_syncs,
        "discover": _phase_json(result.discover.stats),
        "ceiling": _phase_json(result.ceiling.stats) if result.ceiling else None,
        "ceiling_order": CEILING_ORDER if result.ceiling else None,
        "ceiling_fraction": _rounded(result.ceiling_fraction, 4),
        "server_cpu_source": report.server_cpu_source,
        "warnings": result.warnings,
    }


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    milliseconds = seconds * 1000
    return f"{milliseconds:,.2f} ms" if milliseconds < 100 else f"{milliseconds:,.0f} ms"


def _cpu(milliseconds: float | None) -> str:
    return "-" if milliseconds is None else f"{milliseconds:,.3f} ms"


def _rows(stats: PhaseStats) -> list[tuple[str, str]]:
    latency = stats.latency
    rows = [
        ("calls answered", f"{stats.calls:,}"),
        ("errors", f"{stats.calls - stats.ok:,}"),
        ("seconds", f"{stats.seconds:,.2f}"),
        ("requests/s", f"{stats.requests_per_second:,.0f}"),
        ("hashes/s", f"{stats.hashes_per_second:,.0f}"),
        ("matches/request", f"{stats.matches_per_request:,.1f}"),
        ("matches/hash", f"{stats.matches_per_hash:.3f}"),
    ]
    for name, label in _PERCENTILES:
        rows.append((f"latency {label}", _ms(getattr(latency, name) if latency else None)))
    rows.append(("latency max", _ms(latency.max if latency else None)))
    # When every call succeeded and was sent, "all calls" are the successful ones.
    everything = stats.latency_all or latency
    rows.append(("p99, all calls", _ms(everything.p99 if everything else None)))
    rows.append(("max, all calls", _ms(everything.max if everything else None)))
    rows += [
        ("server CPU/request", _cpu(stats.server_cpu_ms_per_request)),
        ("server CPU/1,000 hashes", _cpu(stats.server_cpu_ms_per_1000_hashes)),
        ("harness CPU", f"{stats.harness_cores:.2f} cores"),
    ]
    return rows


def describe_settings(settings: Settings) -> str:
    """One line: the loop, clients, batches, re-syncs and length of a run."""
    length = (
        f"{settings.duration:g} s"
        if settings.duration is not None
        else f"{settings.requests:,} calls"
    )
    loop = (
        f"open loop at {settings.rate:,g} calls/s (at most {settings.max_in_flight:,} in flight)"
        if settings.rate is not None
        else "closed loop"
    )
    connections = "connection" if settings.connections == 1 else "connections"
    return (
        f"{loop}, {settings.concurrency:,} virtual clients on {settings.connections} "
        f"{connections}, {settings.batch:,} hashes a call ({settings.match_share:.0%} registered), "
        f"{'re-syncs' if settings.resync else 'plain calls (--no-resync)'}; "
        f"{length} measured after {settings.warmup:g} s of warm-up"
    )


def render_table(report: Report) -> str:
    """The report as text: settings, a table of both phases, the ceiling, errors, warnings."""
    settings, result = report.settings, report.result
    lines = [f"onnet loadtest against {report.target}", describe_settings(settings)]
    if report.population is not None:
        population = report.population
        lines.append(
            f"population: {population.imported:,} users registered in "
            f"{population.seconds:.1f} s ({population.rejected:,} rejected)"
        )
    if result.first_syncs:
        calls = sum(result.first_syncs.values())
        outcomes = ", ".join(f"{count:,} {code}" for code, count in result.first_syncs.items())
        lines.append(f"first syncs (paid, not measured): {calls:,} calls: {outcomes}")
    phases = [result.discover.stats] + ([result.ceiling.stats] if result.ceiling else [])
    columns = [_rows(stats) for stats in phases]
    header = ["", *(stats.method for stats in phases)]
    table = [header] + [
        [columns[0][i][0], *(column[i][1] for column in columns)] for i in range(len(columns[0]))
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines.append("")
    for row in table:
        cells = [row[0].ljust(widths[0])] + [
            cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    start = "when each call was due" if settings.open_loop else "each call's start"
    lines.append(f"latency: of successful calls, from {start} to its answer")
    if any(
        phase is not None and phase.stats.latency_all is not None
        for phase in (result.discover, result.ceiling)
    ):
        lines.append(
            "all calls: failed ones counted with their time to failure, never-sent ones with "
            "the least they would have waited"
        )
    if result.ceiling is not None:
        lines.append("")
        fraction = result.ceiling_fraction
        share = f"{fraction:.2f}" if fraction is not None else "-"
        lines.append(
            f"Discover: {share} of the ceiling's requests/s (Bench/Ceiling, measured "
            f"{CEILING_ORDER})"
        )
        if settings.open_loop:
            lines.append(f"  ({_OPEN_LOOP_NOTE})")
    if report.server_cpu_source is not None:
        lines.append(f"server CPU read from {report.server_cpu_source}")
    errors = [(stats.method, code, n) for stats in phases for code, n in stats.errors.items()]
    if errors:
        lines.append("")
        lines.append("errors by status code:")
        lines += [f"  {method:<9} {code:<20} {n:,}" for method, code, n in errors]
    if result.warnings:
        lines.append("")
        lines.append("warnings:")
        lines += [f"  - {warning}" for warning in result.warnings]
    return "\n".join(lines) + "\n"
