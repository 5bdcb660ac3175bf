"""Reading an SSE stream as the bytes the server sent, to check what libraries smooth over
(a client library reports the *last* event id on every event, as the SSE spec says)."""

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import EventSource, ServerSentEvent


@dataclass(frozen=True)
class RawEvent:
    event: str
    data: dict[str, Any]
    id: str | None  # as sent on this event, not inherited


def parse_blocks(text: str) -> list[RawEvent]:
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith(":"):
                continue  # a comment (keep-alive ping)
            name, _, value = line.partition(": ")
            fields[name] = value
        if "event" in fields:
            events.append(RawEvent(fields["event"], json.loads(fields["data"]), fields.get("id")))
    return events


async def stream(
    base_url: str, path: str, body: dict[str, Any]
) -> tuple[httpx.Response, list[RawEvent]]:
    headers = {"Accept": "text/event-stream"}
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        response = await client.post(path, json=body, headers=headers)
    is_stream = response.headers["content-type"].startswith("text/event-stream")
    return response, parse_blocks(response.text) if is_stream else []


async def dispatched(source: EventSource) -> AsyncIterator[ServerSentEvent]:
    """The stream's events as the SSE spec dispatches them: a message without data (the
    priming message every Baton stream begins with, PROTOCOL section 6.3) is not an event,
    though httpx-sse yields it."""
    async for event in source.aiter_sse():
        if event.data:
            yield event
