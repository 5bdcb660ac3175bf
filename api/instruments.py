"""What measures turns, one per app: the Prometheus metrics (api/metrics.py) and, when
OpenTelemetry is installed and configured, the traces (api/tracing.py).

The app wires it in three places: the store and the handler the driver is given are
wrapped (api/measured_store.py), and every turn the turn API opens gets a `TurnWatch`,
which the turn's task tells how it ended. Without tracing a watch is one small object and
a clock read per turn; the metrics it updates are children bound once.
"""

from time import perf_counter
from types import TracebackType
from typing import TYPE_CHECKING

from prometheus_client import Gauge

from baton.api.live import TurnEnd, turn_status
from baton.api.measured_store import MeasuredStore
from baton.api.metrics import SSE, WEBSOCKET, Metrics
from baton.domain.events import RecoveredVia
from baton.domain.handler import TurnHandler
from baton.domain.ports import SessionStore
from baton.domain.refusals import Refusal
from baton.domain.turn import OpenTurn, TurnReply
from baton.infra.stores import Database

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.context import Context
    from opentelemetry.trace import Span, TracerProvider

    from baton.api.tracing import Tracing
else:
    TracerProvider = object  # opentelemetry is optional (baton[otel])

__all__ = ["Instruments", "TracerProvider", "TurnWatch"]


def _tracing(provider: TracerProvider | None) -> "Tracing | None":
    """Tracing if opentelemetry is installed and a tracer provider is configured."""
    try:
        from baton.api.tracing import configured  # the optional extra, baton[otel]
    except ImportError:
        return None
    return configured(provider)


class Instruments:
    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        self.metrics = Metrics()
        self.tracing = _tracing(tracer_provider)
        self.sse_streams: Gauge = self.metrics.open_streams[SSE]
        self.websockets: Gauge = self.metrics.open_streams[WEBSOCKET]

    def watch(self, transport: str) -> "TurnWatch":
        """A watch for one turn about to be opened, as a context for its opening."""
        return TurnWatch(self, transport)

    def store(self, database: Database) -> SessionStore:
        """The database's store, measured; and its pool, read at each scrape."""
        self.metrics.read_pool(database.connections_in_use)
        return MeasuredStore(database.store, self.metrics, self.tracing)

    def handler(self, handler: TurnHandler) -> TurnHandler:
        return handler if self.tracing is None else self.tracing.handler(handler)

    def refused(self, refusal: Refusal) -> None:
        self.metrics.refusals[refusal.reason.value].inc()

    def recovered(self, via: RecoveredVia) -> None:
        self.metrics.recoveries[via.value].inc()


class TurnWatch:
    """One turn, from the request that opens it to its end: its duration, its count by how
    it ended, its place among the turns in flight, and its span."""

    __slots__ = ("_began", "_context", "_instruments", "_launched", "_span", "transport")

    def __init__(self, instruments: Instruments, transport: str) -> None:
        self._instruments = instruments
        self.transport = transport
        self._began = 0.0
        self._launched = False
        self._span: Span | None = None
        self._context: Token[Context] | None = None

    def __enter__(self) -> "TurnWatch":
        self._began = perf_counter()
        tracing = self._instruments.tracing
        if tracing is not None:
            # Current while the turn is opened and launched: the claim's span and the
            # turn's task (which copies the context) find it.
            self._span, self._context = tracing.begin_turn(self.transport)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        tracing = self._instruments.tracing
        if tracing is None or self._context is None:
            return
        tracing.current_until(self._context)
        if error is not None and not self._launched and self._span is not None:
            # No turn and no answer: the database was unavailable, or a bug.
            tracing.end_turn(self._span, "error", failed=True)

    def launched(self, opened: OpenTurn) -> None:
        self._launched = True
        self._instruments.metrics.turns_in_flight.inc()
        tracing = self._instruments.tracing
        if tracing is not None and self._span is not None:
            tracing.launched(self._span, opened.session_id, opened.number)

    def answered(self, answer: TurnReply | Refusal) -> None:
        """The opening ended without a turn to run: a replayed reply or a refusal."""
        if isinstance(answer, TurnReply):
            self._instruments.metrics.idempotent_replays.inc()
        tracing = self._instruments.tracing
        if tracing is None or self._span is None:
            return
        if isinstance(answer, TurnReply):
            session_id, turn = answer.session_id, answer.turn
            tracing.end_turn(self._span, "replayed", session_id=session_id, turn=turn)
        else:
            tracing.end_turn(self._span, "refused", reason=answer.reason.value)

    def ended(self, end: TurnEnd) -> None:
        """The turn's task reached its end (or was cancelled: api/live.py's STOPPED)."""
        metrics, status = self._instruments.metrics, turn_status(end)
        metrics.turns[self.transport][status].inc()
        metrics.turn_seconds[self.transport].observe(perf_counter() - self._began)
        metrics.turns_in_flight.dec()
        tracing = self._instruments.tracing
        if tracing is not None and self._span is not None:
            tracing.end_turn(self._span, status, failed=status in ("failed", "crashed"))
