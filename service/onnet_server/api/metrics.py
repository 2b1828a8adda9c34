"""Metrics for the people who run onnet, in the Prometheus exposition format.

Labels are only ever a method name (from a fixed list) and a status code name: never a
number, a hash, a user id, an account or anything else a caller sent. Values are counts,
durations and sizes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc import aio
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    ProcessCollector,
    start_http_server,
)

from onnet_server.api.histogram import LabelledHistogram, Series
from onnet_server.api.status import ended_with
from onnet_server.api.watched import StableWrappers, watched
from onnet_server.core.ports import RegistryStore

__all__ = ["Metrics", "MetricsInterceptor", "serve_metrics"]

_KNOWN_SERVICES = ("onnet.v1.Discovery", "onnet.v1.Registry", "onnet.v1.Bench")
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
_SIZE_BUCKETS = (1, 10, 100, 1_000, 10_000, 100_000)
_QUOTA_METHODS = frozenset({"Discovery/Discover", "Discovery/BlindEvaluate"})


class Metrics:
    """Every metric of one server.

    Each server has its own registry: several servers share a process in tests.
    """

    def __init__(self) -> None:
        """Create the metrics, empty."""
        self.registry = CollectorRegistry()
        """What the HTTP endpoint exposes."""
        self.calls = Counter(
            "onnet_calls", "RPCs answered, by method and status code.",
            ["method", "code"], registry=self.registry,
        )  # fmt: skip
        # Observed on every call: histograms without locks (see histogram.py).
        self.latency = LabelledHistogram(
            "onnet_call_seconds", "Time from a call's arrival to its answer, by method.",
            "method", _LATENCY_BUCKETS, self.registry,
        )  # fmt: skip
        self.batch_size = LabelledHistogram(
            "onnet_batch_size",
            "Items per call: hashes (Discover, Lookup), elements (BlindEvaluate), buckets "
            "(FetchBuckets), rows (ImportUsers batches).",
            "method", _SIZE_BUCKETS, self.registry,
        )  # fmt: skip
        self.quota_refusals = Counter(
            "onnet_quota_refusals", "Calls refused because the account's quota was spent.",
            ["method"], registry=self.registry,
        )  # fmt: skip
        self.registered_users = Gauge(
            "onnet_registered_users", "Users in this process's index.", registry=self.registry
        )
        self.bucket_entries = Gauge(
            "onnet_bucket_entries", "Private-mode entries this process serves.",
            registry=self.registry,
        )  # fmt: skip
        self.feed_lag = Gauge(
            "onnet_change_feed_lag_seconds",
            "Age of the newest change this process applied from Redis's streams, when it "
            "applied it (0 for the embedded store).",
            registry=self.registry,
        )
        self.feed_reloads = Gauge(
            "onnet_change_feed_reloads", "Snapshots this process loaded from Redis.",
            registry=self.registry,
        )  # fmt: skip
        ProcessCollector(registry=self.registry)
        self._children: dict[tuple[str, str], tuple[Any, Series]] = {}
        self._batch_children: dict[str, Series] = {}

    def refresh(self, store: RegistryStore) -> None:
        """Read the store's sizes and feed state into the gauges.

        Called on the event loop that owns the store (the scrape runs on another thread,
        which must not walk the index while the loop changes it).
        """
        self.registered_users.set(len(store))
        self.bucket_entries.set(store.bucket_entry_count())
        feed = store.feed_state()
        self.feed_lag.set(feed.lag_seconds)
        self.feed_reloads.set(feed.reloads)

    async def follow(self, store: RegistryStore, interval: float = 1.0) -> None:
        """Refresh the gauges from ``store`` every ``interval`` seconds, until cancelled."""
        while True:
            self.refresh(store)
            await asyncio.sleep(interval)

    def observe(self, method: str, code: str, seconds: float) -> None:
        """Count one answered call."""
        children = self._children.get((method, code))
        if children is None:
            # A label lookup costs microseconds on every call; the children never change.
            children = self._children[(method, code)] = (
                self.calls.labels(method, code),
                self.latency.labels(method),
            )
        children[0].inc()
        children[1].observe(seconds)
        if code == "RESOURCE_EXHAUSTED" and method in _QUOTA_METHODS:
            self.quota_refusals.labels(method).inc()

    def items(self, method: str, count: int) -> None:
        """Record how many items one call carried."""
        child = self._batch_children.get(method)
        if child is None:
            child = self._batch_children[method] = self.batch_size.labels(method)
        child.observe(count)


def method_label(full_method: str) -> str:
    """The metric label of a method: 'Service/Method' for onnet's own, else 'other'."""
    service, _, method = full_method.lstrip("/").partition("/")
    if service in _KNOWN_SERVICES and method.isidentifier():
        return f"{service.rsplit('.', 1)[-1]}/{method}"
    return "other"


class MetricsInterceptor(aio.ServerInterceptor):
    """Times every call of onnet's services and counts it by method and status code.

    Outermost, so it also counts the calls the gate refuses before reading them.
    """

    def __init__(self, metrics: Metrics) -> None:
        """Record into ``metrics``."""
        self._metrics = metrics
        self._labels: dict[str, str] = {}
        self._timed = StableWrappers(self._wrap)

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """Wrap onnet's handlers, of every kind; pass health checks and reflection through."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        path = handler_call_details.method
        method = self._labels.get(path)
        if method is None:
            method = self._labels[path] = method_label(path) if len(self._labels) < 256 else "other"
        if method == "other":  # health checks, reflection: not onnet's calls
            return handler
        return self._timed.of(path, handler)

    def _wrap(
        self, path: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        metrics, method = self._metrics, self._labels[path]

        def done(
            context: aio.ServicerContext[Any, Any], started: float, error: BaseException | None
        ) -> None:
            metrics.observe(method, ended_with(context, error).name, time.perf_counter() - started)

        return watched(handler, done)


def serve_metrics(metrics: Metrics, listen: str) -> Callable[[], None]:
    """Serve ``metrics`` over HTTP at HOST:PORT (``/metrics``); returns the stop function."""
    host, _, port = listen.rpartition(":")
    server, thread = start_http_server(int(port), host.strip("[]"), registry=metrics.registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return stop
