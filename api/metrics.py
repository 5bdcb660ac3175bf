"""What /metrics serves, in the Prometheus text format, through prometheus_client.

Each app keeps its own registry, so several apps in one process (the tests) count apart.
With PROMETHEUS_MULTIPROC_DIR set (`baton serve --workers N` sets it), every worker writes
its values to files there and /metrics sums the workers' files with prometheus_client's
multiprocess collector, so a scrape that reaches any worker sees them all.

Label values come from short fixed vocabularies (a reason, a status, a transport, a store
operation), never from a request: no session id or token can become a series. The hot path
only looks up a child bound once (`.labels()` runs the first time a value is seen) and
increments or observes it.
"""

import os
from collections.abc import Callable
from typing import Generic, TypeVar

from litestar import Litestar
from litestar.datastructures import State
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from baton.domain.refusals import RefusalReason

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
# The text format every Prometheus reads (Litestar adds `; charset=utf-8`). Newer
# prometheus_client versions announce 1.0.0, which only differs for names outside
# [a-zA-Z0-9_:], and Baton's are all inside.
TEXT_FORMAT = "text/plain; version=0.0.4"

REST, SSE, WEBSOCKET = "rest", "sse", "websocket"
TRANSPORTS = (REST, SSE, WEBSOCKET)
# How a turn ends (api/live.py's turn_status).
TURN_STATUSES = (
    "finished",
    "parked",
    "contended",
    "cancelled",
    "invalid-input",
    "failed",
    "crashed",
)

# A turn may wait on a model or a person for minutes; a store operation takes milliseconds.
TURN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


C = TypeVar("C")


class _Bound(Generic[C]):
    """A metric's children, each bound by `.labels()` once and reused."""

    def __init__(self, labels: Callable[..., C]) -> None:
        self._labels = labels
        self._children: dict[str, C] = {}

    def __getitem__(self, value: str) -> C:
        child = self._children.get(value)
        if child is None:
            child = self._children[value] = self._labels(value)
        return child


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROCESS_DIR))


class Metrics:
    def __init__(self) -> None:
        # In multiprocess mode values live in the directory's files, not in a registry.
        registry = None if multiprocess() else CollectorRegistry(auto_describe=True)
        self._registry = registry or _collecting_every_worker()
        self._metrics_registry = registry
        self._errors = Counter(
            "baton_errors",
            "Requests answered with an error over HTTP, by reason (protocol refusals "
            "included; bad-request, too-large and unauthenticated never reach the protocol).",
            ["reason"],
            registry=registry,
        )
        turns = Counter(
            "baton_turns",
            "Turns that ran to an end, by status and transport.",
            ["status", "transport"],
            registry=registry,
        )
        refusals = Counter(
            "baton_refusals",
            "Protocol refusals answered (each one a stored row), by reason.",
            ["reason"],
            registry=registry,
        )
        turn_seconds = Histogram(
            "baton_turn_duration_seconds",
            "From a turn's request to its end: claim, handler and commit, by transport.",
            ["transport"],
            buckets=TURN_BUCKETS,
            registry=registry,
        )
        store_seconds = Histogram(
            "baton_store_operation_duration_seconds",
            "Session store operations, each one database transaction, by operation.",
            ["operation"],
            buckets=STORE_BUCKETS,
            registry=registry,
        )
        self.turns_in_flight = Gauge(
            "baton_turns_in_flight",
            "Turns claimed and running in this process (summed over workers).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        streams = Gauge(
            "baton_open_streams",
            "SSE responses and WebSocket connections open, by transport.",
            ["transport"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.lease_takeovers = Counter(
            "baton_lease_takeovers",
            "Claims that took a session over from a turn whose lease had lapsed.",
            registry=registry,
        )
        recoveries = Counter(
            "baton_recoveries",
            "Lost replies recovered with the token their turn consumed, by how (read, events).",
            ["via"],
            registry=registry,
        )
        self.idempotent_replays = Counter(
            "baton_idempotent_replays",
            "Retries answered with their committed turn's reply (Idempotent-Replayed).",
            registry=registry,
        )
        self._pool: tuple[Gauge, Callable[[], int]] | None = None
        self.errors = _Bound(self._errors.labels)
        self.refusals = _Bound(refusals.labels)
        self.recoveries = _Bound(recoveries.labels)
        self.store_seconds = _Bound(store_seconds.labels)
        self.open_streams = _Bound(streams.labels)
        self.turn_seconds = _Bound(turn_seconds.labels)
        self.turns = {
            transport: _Bound(lambda status, t=transport: turns.labels(status, t))
            for transport in TRANSPORTS
        }
        # Series that exist from the start, at zero: a rate over a missing series is empty.
        for transport in TRANSPORTS:
            for status in TURN_STATUSES:
                self.turns[transport][status].inc(0)
        for reason in RefusalReason:
            self.refusals[reason.value].inc(0)

    @staticmethod
    def of(app: Litestar) -> "Metrics":
        return Metrics.of_state(app.state)

    @staticmethod
    def of_state(state: State) -> "Metrics":
        metrics: Metrics = state.metrics
        return metrics

    def count_error(self, reason: str) -> None:
        self.errors[reason].inc()

    def read_pool(self, in_use: Callable[[], int] | None) -> None:
        """Where a scrape reads the connections the pool has checked out. SQLite has no
        pool (one writer thread, one reader connection): no series then."""
        if in_use is None or self._pool is not None:
            return
        gauge = Gauge(
            "baton_db_pool_connections_in_use",
            "PostgreSQL pool connections checked out, as of the last scrape each worker served.",
            registry=self._metrics_registry,
            multiprocess_mode="livesum",
        )
        self._pool = gauge, in_use

    def render(self) -> tuple[bytes, str]:
        """The scrape's body and content type."""
        if self._pool is not None:
            gauge, in_use = self._pool
            gauge.set(in_use())
        return generate_latest(self._registry), TEXT_FORMAT


def _collecting_every_worker() -> CollectorRegistry:
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry
