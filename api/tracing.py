"""Traces of turns through OpenTelemetry (the optional extra `baton[otel]`).

Only api/instruments.py imports this module, and only when opentelemetry is installed and a
tracer provider is configured; otherwise nothing here runs and tracing costs nothing.

A turn is one span, `baton.turn`, with children for its store operations (`baton.claim`,
`baton.record`, `baton.renew`, `baton.commit`, `baton.release`) and for its handler
(`baton.handler`, whose own store operations nest under it). The turn outlives the request
that opened it (it runs in a task of its own, api/live.py), so its span is ended by hand
when the turn ends; the children find it as the current span, which the turn's task
inherits from the request's context when it is created.

Attributes are the session id (only once it parsed as one, so nothing a client made up),
the turn's number, the transport, the outcome and the refusal reason: fixed vocabularies
and validated values. No token, no Idempotency-Key and no header value is ever recorded.
"""

from contextlib import AbstractContextManager
from contextvars import Token

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NoOpTracerProvider, ProxyTracerProvider, Span, StatusCode
from opentelemetry.util.types import AttributeValue

from baton.domain.handler import Turn, TurnHandler
from baton.domain.outcomes import HandlerOutcome

SCOPE = "baton"
TURN_SPAN = "baton.turn"
HANDLER_SPAN = "baton.handler"
SESSION_ID = "baton.session_id"
TURN = "baton.turn"
TRANSPORT = "baton.transport"
OUTCOME = "baton.outcome"
REFUSAL_REASON = "baton.refusal_reason"
STORE_OPERATION = "baton.store.operation"

# The store operations a turn makes, as the spans they get (others are only measured).
STEP_SPANS = {
    "start": "baton.claim",  # a start claims turn 1
    "claim": "baton.claim",
    "append_record": "baton.record",
    "renew": "baton.renew",
    "commit": "baton.commit",
    "release": "baton.release",
}


class Tracing:
    def __init__(self, provider: trace.TracerProvider) -> None:
        self._tracer = provider.get_tracer(SCOPE)

    def begin_turn(self, transport: str) -> tuple[Span, Token[Context]]:
        """The turn's span, made the current one until the token is detached."""
        span = self._tracer.start_span(TURN_SPAN, attributes={TRANSPORT: transport})
        return span, otel_context.attach(trace.set_span_in_context(span))

    @staticmethod
    def current_until(token: Token[Context]) -> None:
        """The turn's span stops being the current one (its opening is over)."""
        otel_context.detach(token)

    @staticmethod
    def launched(span: Span, session_id: str, turn: int) -> None:
        span.set_attributes({SESSION_ID: session_id, TURN: turn})

    @staticmethod
    def end_turn(
        span: Span,
        outcome: str,
        *,
        reason: str | None = None,
        session_id: str | None = None,
        turn: int | None = None,
        failed: bool = False,
    ) -> None:
        attributes: dict[str, AttributeValue] = {OUTCOME: outcome}
        if reason is not None:
            attributes[REFUSAL_REASON] = reason
        if session_id is not None and turn is not None:
            attributes[SESSION_ID], attributes[TURN] = session_id, turn
        span.set_attributes(attributes)
        if failed:
            span.set_status(StatusCode.ERROR)
        span.end()

    def step(self, operation: str) -> AbstractContextManager[Span] | None:
        """A child span for a store operation of a turn; None for the others."""
        name = STEP_SPANS.get(operation)
        if name is None:
            return None
        return self._tracer.start_as_current_span(name, attributes={STORE_OPERATION: operation})

    def handler(self, handler: TurnHandler) -> TurnHandler:
        tracer = self._tracer

        async def traced(turn: Turn) -> HandlerOutcome:
            with tracer.start_as_current_span(HANDLER_SPAN):
                return await handler(turn)

        return traced


def configured(provider: trace.TracerProvider | None) -> Tracing | None:
    """Tracing with `provider`, or with the global one if the application set one."""
    chosen = provider if provider is not None else trace.get_tracer_provider()
    if isinstance(chosen, ProxyTracerProvider | NoOpTracerProvider):
        return None  # nothing configured: every span would be dropped anyway
    return Tracing(chosen)
