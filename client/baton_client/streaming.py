"""One streamed turn (`AsyncSession.stream`): the POST's SSE stream, and what happens when it
drops. After the priming message (the claim's seq) the turn is resumed from GET .../events
with `Last-Event-ID`; before it, or when the resumed stream goes silent for `resume_idle`
seconds, or the turn was released as `unavailable`, the POST is sent again with the same
key and token. Records are yielded once each, whatever the number of attempts."""

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from baton_client.errors import StaleToken, Unavailable
from baton_client.models import Delta, Event, Input, Json, Outcome, Record, outcome_from
from baton_client.retry import Dropped, Stalled
from baton_client.transport import EVENT_STREAM, in_band_error, replayed, sse_objects

if TYPE_CHECKING:
    from baton_client.session import AsyncSession


class TurnStream:
    def __init__(self, session: "AsyncSession", input: Input, key: str) -> None:
        self.session = session
        self.input = input
        self.key = key
        self.attempts = session._t.attempts()
        self.last_id: str | None = None  # where a dropped stream resumes: the last SSE id
        self.claim = 0  # the priming id of the POST sent last: its records come after it
        self.records: dict[int, Json] = {}  # yielded so far, by seq

    async def events(self) -> AsyncGenerator[Event]:
        while True:
            resuming = self.last_id is not None and self.session.started
            source = self._resumed() if resuming else self._posted()
            try:
                async with contextlib.aclosing(source):
                    async for event in source:
                        yield event
                        if isinstance(event, Outcome):
                            return
                raise Dropped("the stream ended before the turn did")
            except StaleToken as error:
                yield await self.session._recover(error, self.attempts)
                return
            except Exception as error:  # absorb() re-raises whatever is final
                if isinstance(error, Unavailable | Stalled):
                    self.last_id = None  # not running (or not here): send the turn again
                await self.attempts.absorb(error)

    async def _posted(self) -> AsyncGenerator[Event]:
        session = self.session
        headers = {**session._turn_headers(self.key), "Accept": EVENT_STREAM}
        post = session._t.stream(
            "POST", session._turn_url(), json=dict(self.input), headers=headers
        )
        async with post as response:
            again = replayed(response)
            async for sse_id, body in sse_objects(response):
                if body is None:
                    self._primed(sse_id)
                elif (event := self._live(body, sse_id, again)) is not None:
                    yield event

    def _live(self, body: dict[str, Any], sse_id: str, again: bool) -> Event | None:
        kind = body.get("type")
        if kind == "record":
            return self._record(int(sse_id), body.get("record"))
        if kind == "delta":
            return Delta(str(body.get("text", "")))
        if kind == "outcome":
            self.session._count_replay(again)
            seq = int(sse_id) if sse_id and body.get("status") != "contended" else None
            outcome = outcome_from(body, seq=seq, replayed=again)
            return replace(outcome, records=self._kept())
        if kind == "error":
            raise in_band_error(body)
        return None

    async def _resumed(self) -> AsyncGenerator[Event]:
        """The rest of a dropped turn stream, from the session's stored events."""
        session, stats = self.session, self.session._t.stats
        headers = {**session._token_header(), "Accept": EVENT_STREAM}
        headers["Last-Event-ID"] = self.last_id or ""
        async with session._t.stream("GET", session._url("/events"), headers=headers) as response:
            stats.resumed_streams += 1
            bodies = sse_objects(response)
            while True:
                try:
                    async with asyncio.timeout(session._t.policy.resume_idle):
                        _, body = await anext(bodies)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise Stalled("the resumed stream stored nothing for a while") from None
                event = self._stored(body) if body is not None else None
                if isinstance(event, Outcome):
                    event = await session._with_token(event)
                    stats.recoveries["events-resume"] += 1
                if event is not None:
                    yield event

    def _stored(self, body: dict[str, Any]) -> Event | None:
        kind, seq = body.get("type"), int(body.get("seq", 0))
        if kind == "record" and body.get("void"):
            self.last_id = str(seq)  # an attempt that did not commit; its error follows
            return None
        if kind == "record":
            return self._record(seq, body.get("record"), body.get("turn"))
        if kind == "outcome":
            return replace(outcome_from(body), records=self._kept())
        if kind == "error":
            raise in_band_error(body)
        return None

    def _primed(self, sse_id: str) -> None:
        if sse_id.isdigit():
            self.last_id, self.claim = sse_id, int(sse_id)

    def _record(self, seq: int, record: Json, turn: int | None = None) -> Record | None:
        self.last_id = str(seq)
        if seq in self.records:
            return None  # given again by a replay: yielded already
        self.records[seq] = record
        return Record(seq, record, turn)

    def _kept(self) -> tuple[Json, ...]:
        """The records of the attempt that ended the turn."""
        return tuple(record for seq, record in sorted(self.records.items()) if seq > self.claim)
