"""Traces through OpenTelemetry's in-memory exporter: a turn is a span whose children are its
claim, its handler and its commit; its attributes say which session, turn and transport and
how it ended; no attribute holds a token, and without a tracer nothing is traced."""

import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import pytest
from httpx import AsyncClient
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.api.app import create_app
from baton.api.demo import demo_handler
from baton.api.instruments import Instruments
from baton.infra.settings import Settings
from tests.api.conftest import in_process_client, running

KEY = "tracing-test-idempotency-key-0001"


@dataclass
class Traced:
    client: AsyncClient
    exporter: InMemorySpanExporter


@pytest.fixture(scope="module")
async def traced(settings: Settings, engine: AsyncEngine) -> AsyncIterator[Traced]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app(settings, handler=demo_handler, tracer_provider=provider)
    async with running(app), in_process_client(app) as client:
        yield Traced(client, exporter)


@pytest.fixture
def spans(traced: Traced) -> Traced:
    traced.exporter.clear()
    return traced


def children(of: ReadableSpan, spans: Sequence[ReadableSpan]) -> list[str]:
    assert of.context is not None
    return [
        span.name
        for span in sorted(spans, key=lambda span: span.start_time or 0)
        if span.parent is not None and span.parent.span_id == of.context.span_id
    ]


def one(name: str, spans: Sequence[ReadableSpan]) -> ReadableSpan:
    (found,) = [span for span in spans if span.name == name]
    return found


def assert_no_secret(spans: Sequence[ReadableSpan], secrets: set[str]) -> None:
    for span in spans:
        texts = [str(value) for value in (span.attributes or {}).values()]
        texts += [str(v) for event in span.events for v in (event.attributes or {}).values()]
        for text in texts:
            assert not any(secret in text for secret in secrets), (span.name, text)


async def test_a_turn_is_a_span_with_its_claim_handler_and_commit(spans: Traced) -> None:
    client = spans.client
    started = (await client.post("/v1/session", json={"message": "hi"})).json()
    session_id, token = started["sessionId"], started["continuationToken"]
    spans.exporter.clear()

    headers = {"X-Continuation-Token": token, "Idempotency-Key": KEY}
    path = f"/v1/session/{session_id}/message"
    reply = (await client.post(path, json={"message": "again"}, headers=headers)).json()

    finished = spans.exporter.get_finished_spans()
    turn = one("baton.turn", finished)
    assert turn.parent is None
    assert children(turn, finished) == ["baton.claim", "baton.handler", "baton.commit"]
    assert children(one("baton.handler", finished), finished) == ["baton.record"]  # demo's
    assert dict(turn.attributes or {}) == {
        "baton.transport": "rest",
        "baton.session_id": session_id,
        "baton.turn": 2,
        "baton.outcome": "finished",
    }
    assert one("baton.claim", finished).attributes == {"baton.store.operation": "claim"}
    assert turn.status.status_code is StatusCode.UNSET
    assert_no_secret(finished, {token, reply["continuationToken"], KEY})


async def test_a_refused_turn_says_why_and_names_no_session(spans: Traced) -> None:
    client = spans.client
    started = (await client.post("/v1/session", json={"message": "hi"})).json()
    session_id, token = started["sessionId"], started["continuationToken"]
    headers = {"X-Continuation-Token": token}
    path = f"/v1/session/{session_id}/message"
    await client.post(path, json={"message": "spends it"}, headers=headers)
    spans.exporter.clear()

    refused = await client.post(path, json={"message": "stale"}, headers=headers)

    assert refused.status_code == 409
    finished = spans.exporter.get_finished_spans()
    turn = one("baton.turn", finished)
    assert dict(turn.attributes or {}) == {
        "baton.transport": "rest",
        "baton.outcome": "refused",
        "baton.refusal_reason": "stale-token",
    }
    assert children(turn, finished) == ["baton.claim"]
    assert_no_secret(finished, {token})


async def test_a_failed_streamed_turn_is_an_error_span(spans: Traced) -> None:
    headers = {"Accept": "text/event-stream"}
    response = await spans.client.post("/v1/session", json={"message": "/fail"}, headers=headers)

    assert "event: error" in response.text
    finished = spans.exporter.get_finished_spans()
    turn = one("baton.turn", finished)
    assert (turn.attributes or {})["baton.transport"] == "sse"
    assert (turn.attributes or {})["baton.outcome"] == "failed"
    assert turn.status.status_code is StatusCode.ERROR
    assert children(turn, finished) == ["baton.claim", "baton.handler", "baton.release"]


def test_without_opentelemetry_nothing_is_traced(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Instruments().tracing is None  # installed, but no tracer provider configured
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "baton.api.tracing", raising=False)
    instruments = Instruments(TracerProvider())
    assert instruments.tracing is None
    assert instruments.handler(demo_handler) is demo_handler  # not even wrapped
