"""The PNG of a run: latency over time (every call, and p50/p99 per time slice) and its histogram.

matplotlib is an optional dependency (``pip install 'onnet[loadtest]'``), imported only
here and only when a plot is asked for; it draws with the Agg backend, which needs no
display and keeps no global state.
"""

from __future__ import annotations

import importlib.util
import math
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from onnet_server.loadtest.runner import PhaseResult, RunResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.axis import Axis

__all__ = ["PlotUnavailableError", "check_plotting", "write_plot"]

INSTALL_HINT = "--plot needs matplotlib: pip install 'onnet[loadtest]'"
_MOST_POINTS = 50_000  # more points draw slowly and show nothing more
_SLICES = 60
_COLOURS = {"Discover": "tab:blue", "Ceiling": "tab:green"}

Floats = np.ndarray[tuple[int], np.dtype[np.float64]]


class PlotUnavailableError(Exception):
    """matplotlib is not installed."""


def check_plotting() -> None:
    """Raise PlotUnavailableError now, rather than after a whole run, if plotting cannot work."""
    if importlib.util.find_spec("matplotlib") is None:
        raise PlotUnavailableError(INSTALL_HINT)


def write_plot(path: Path, result: RunResult, title: str) -> None:
    """Write the PNG of ``result`` to ``path``."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
        from matplotlib.figure import Figure  # noqa: PLC0415
    except ImportError:
        raise PlotUnavailableError(INSTALL_HINT) from None
    figure = Figure(figsize=(10, 8), layout="constrained")
    FigureCanvasAgg(figure)
    over_time, histogram = figure.subplots(2, 1)
    phases = [phase for phase in (result.discover, result.ceiling) if phase is not None]
    everything = np.concatenate([_ok_latencies_ms(phase) for phase in phases])
    bins = _bins(everything)
    for phase in phases:
        _draw_over_time(over_time, phase)
        latencies = _ok_latencies_ms(phase)
        if len(latencies):
            histogram.hist(
                latencies,
                bins=bins,
                histtype="step",
                color=_COLOURS.get(phase.stats.method),
                label=phase.stats.method,
            )
    over_time.set_yscale("log")
    over_time.set_xlabel("seconds into the measured window")
    over_time.set_ylabel("latency (ms)")
    over_time.set_title("latency over time")
    over_time.legend(loc="upper right", fontsize="small", markerscale=4)
    histogram.set_xscale("log")
    _plain_numbers(over_time.yaxis)
    _plain_numbers(histogram.xaxis)
    histogram.set_xlabel("latency (ms)")
    histogram.set_ylabel("calls")
    histogram.set_title("latency histogram (successful calls)")
    if len(everything):
        histogram.legend(loc="upper right", fontsize="small")
    figure.suptitle(textwrap.fill(title, 120), fontsize="medium")
    figure.savefig(path, format="png", dpi=100)


def _plain_numbers(axis: Axis) -> None:
    """Label a logarithmic axis 2, 5, 10 rather than 2x10^0."""
    from matplotlib.ticker import FuncFormatter  # noqa: PLC0415

    plain = FuncFormatter(lambda value, _position: f"{value:g}")
    axis.set_major_formatter(plain)
    axis.set_minor_formatter(plain)


def _ok_latencies_ms(phase: PhaseResult) -> Floats:
    return phase.samples.ok_latencies() * 1000


def _bins(latencies: Floats) -> Floats:
    """Logarithmic bins over the range of ``latencies`` (milliseconds)."""
    if not len(latencies):
        return np.array([0.1, 1.0])
    low, high = max(float(latencies.min()), 1e-3), max(float(latencies.max()), 1e-3)
    if high <= low * 1.01:
        low, high = low / 1.5, high * 1.5
    return np.logspace(math.log10(low), math.log10(high), 60)


def _draw_over_time(axes: Axes, phase: PhaseResult) -> None:
    samples, method = phase.samples, phase.stats.method
    offsets = np.frombuffer(samples.offsets, dtype=np.float64)
    latencies = np.frombuffer(samples.latencies, dtype=np.float64) * 1000
    ok = np.frombuffer(samples.codes, dtype=np.uint8) == 0
    colour = _COLOURS.get(method)
    stride = max(1, math.ceil(len(offsets) / _MOST_POINTS))
    axes.scatter(
        offsets[ok][::stride],
        latencies[ok][::stride],
        s=2,
        alpha=0.3,
        color=colour,
        rasterized=True,
        label=f"{method} calls" + (f" (1 in {stride})" if stride > 1 else ""),
    )
    if (~ok).any():
        axes.scatter(
            offsets[~ok][::stride],
            latencies[~ok][::stride],
            s=8,
            marker="x",
            color="tab:red",
            label=f"{method} errors",
        )
    if ok.sum() >= 2:
        middles, p50, p99 = _per_slice(offsets[ok], latencies[ok])
        axes.plot(middles, p50, color=colour, linewidth=1.5, label=f"{method} p50")
        axes.plot(middles, p99, color=colour, linewidth=1.5, linestyle="--", label=f"{method} p99")


def _per_slice(offsets: Floats, latencies: Floats) -> tuple[Floats, Floats, Floats]:
    """p50 and p99 of the calls in each of up to _SLICES equal time slices."""
    edges = np.linspace(float(offsets.min()), float(offsets.max()) + 1e-9, _SLICES + 1)
    slice_of = np.digitize(offsets, edges) - 1
    middles, p50, p99 = [], [], []
    for number in range(_SLICES):
        inside = latencies[slice_of == number]
        if len(inside):
            middles.append((edges[number] + edges[number + 1]) / 2)
            p50.append(float(np.percentile(inside, 50)))
            p99.append(float(np.percentile(inside, 99)))
    return np.array(middles), np.array(p50), np.array(p99)
