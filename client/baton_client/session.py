"""A session as the client holds it: its id, its current token, the turn under way.

Every turn is sent with an Idempotency-Key, saved in the token store (with the input's
fingerprint) before the request leaves, so a retry, and even a restarted process sending the
same input, presents the same key and token: the server then answers the committed turn's
reply again (`Idempotent-Replayed`) instead of running it twice. How each lost reply is
recovered:
- buffered: the retry is replayed; a `stale-token` answer after an attempt whose reply was
  lost is recovered by reading the session with the token it consumed (its `lastOutcome`
  then carries the token that turn issued); without a lost reply it raises `StaleToken`.
- streamed (streaming.py): a stream that drops after its priming message resumes from GET
  .../events with `Last-Event-ID` (records are never repeated; deltas sent while
  disconnected are lost, they are never stored), then reads the session if the outcome came
  without its token; a stream that drops earlier, or whose resumed stream stays silent for
  `resume_idle` seconds (its replica may have died), is sent again like a buffered retry. A
  record yielded before a drop may belong to an attempt that then did not commit (its
  replica died); `Outcome.records` are those of the attempt that committed.
- a pending turn whose input is not sent again (the process died, a stream was abandoned):
  the next turn first reads the session to learn whether it committed.
"""

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import replace

from baton_client.errors import BatonError, Closed, InFlight, NoSession, StaleToken
from baton_client.models import (
    Event,
    Input,
    Outcome,
    SessionView,
    StoredEvent,
    fingerprint,
    outcome_from,
    session_view,
    stored_event,
)
from baton_client.retry import Attempts
from baton_client.store import MemoryTokenStore, SavedSession, TokenStore
from baton_client.streaming import TurnStream
from baton_client.transport import (
    EVENT_STREAM,
    KEY_HEADER,
    TOKEN_HEADER,
    Transport,
    replayed,
    sse_objects,
)

# Answers after which the turn certainly did not commit (anything else may have: keep its key).
UNDECIDED = {"unavailable", "in-flight", "stale-token", "internal-error"}


class AsyncSession:
    def __init__(
        self,
        transport: Transport,
        store: TokenStore | None = None,
        saved: SavedSession | None = None,
    ) -> None:
        self._t = transport
        self._store = store or MemoryTokenStore()
        saved = saved or SavedSession()
        self.session_id = saved.session_id
        self._token = saved.token
        self._pending = (
            (saved.pending_key, saved.pending_fingerprint) if saved.pending_key else None
        )
        self.turn: int | None = None  # the last committed turn, once known
        self.outcome: Outcome | None = None  # the last turn's outcome
        self.closed = False
        self._lock = asyncio.Lock()  # one turn at a time

    @property
    def started(self) -> bool:
        return self._token is not None

    @property
    def continuation_token(self) -> str | None:
        return self._token

    @property
    def pending(self) -> bool:
        """A turn was sent and its outcome is not known yet."""
        return self._pending is not None

    async def send(self, input: Input) -> Outcome:
        """Run one turn, buffered (the first one starts the session)."""
        async with self._lock:
            key = await self._prepare(input)
            attempts = self._t.attempts()
            try:
                response = await self._t.call(
                    "POST", self._turn_url(), attempts=attempts, json=dict(input),
                    headers=self._turn_headers(key),
                )  # fmt: skip
                again = replayed(response)
                self._count_replay(again)
                outcome = outcome_from(response.json(), replayed=again)
            except StaleToken as error:
                outcome = await self._recover(error, attempts)
            except BatonError as error:
                self._failed(error)
                raise
            self._settle(outcome)
            return outcome

    async def stream(self, input: Input) -> AsyncIterator[Event]:
        """Run one turn, streamed: its records and deltas as they come, then its outcome."""
        async with self._lock:
            key = await self._prepare(input)
            try:
                async with contextlib.aclosing(TurnStream(self, input, key).events()) as events:
                    async for event in events:
                        if isinstance(event, Outcome):
                            self._settle(event)
                        yield event
            except BatonError as error:
                self._failed(error)
                raise

    async def read(self) -> SessionView:
        """The session as the server sees it (consumes nothing)."""
        return await self._read_view()

    async def events(self, after: int = 0) -> list[StoredEvent]:
        """The session's stored events after seq `after`."""
        self._require_started()
        response = await self._t.call(
            "GET", self._url("/events"), params={"after": after}, headers=self._token_header()
        )
        return [event for body in response.json() if (event := stored_event(body)) is not None]

    async def follow(self, after: int = 0) -> AsyncIterator[StoredEvent]:
        """The stored events after `after`, then a running turn's as they are stored, up to its
        end; a dropped stream resumes where it stopped (Last-Event-ID)."""
        self._require_started()
        attempts, last = self._t.attempts(), str(after)
        while True:
            headers = {**self._token_header(), "Accept": EVENT_STREAM, "Last-Event-ID": last}
            try:
                async with self._t.stream("GET", self._url("/events"), headers=headers) as reply:
                    async for _, body in sse_objects(reply):
                        if body is not None and (event := stored_event(body)) is not None:
                            last = str(event.seq)
                            yield event
                return
            except Exception as error:  # absorb() re-raises whatever is final
                await attempts.absorb(error)
                self._t.stats.resumed_streams += 1

    async def cancel(self, wait: float = 10.0) -> SessionView:
        """Stop the running turn (its request then raises Cancelled). The view's status is
        still `in-flight` if the turn had not stopped within `wait` seconds."""
        self._require_started()
        response = await self._t.call(
            "POST", self._url("/cancel"), ok=(200, 202), params={"wait": wait},
            headers=self._token_header(), timeout=wait + 15.0,
        )  # fmt: skip
        return session_view(response.json())

    async def close(self) -> None:
        """Close the session (later turns get Closed) and forget it in the store."""
        async with self._lock:
            self._require_started()
            attempts = self._t.attempts()
            try:
                await self._t.call(
                    "DELETE", self._url(), attempts=attempts, headers=self._token_header()
                )
            except Closed:
                if not attempts.ambiguous:
                    raise  # closed before, not by a retry of this call
            self.closed = True
            self._store.clear()

    # ------------------------------------------------------------------ turns

    async def _prepare(self, input: Input) -> str:
        """The turn's Idempotency-Key: the pending turn's if this is its input again, else a
        new one, saved before anything is sent."""
        if self.closed:
            raise Closed(f"session '{self.session_id}' is closed")
        print_ = fingerprint(input)
        if self._pending is not None:
            key, pending_print = self._pending
            if pending_print == print_:
                return key
            await self._reconcile()
        key = secrets.token_urlsafe(24)  # 32 characters; a start needs at least 22
        self._pending = (key, print_)
        self._save()
        return key

    # --------------------------------------------------------------- recovery

    async def _recover(self, error: StaleToken, attempts: Attempts) -> Outcome:
        """`stale-token` after an attempt whose reply was lost: that attempt's turn committed,
        so the consumed token reads it (and the token it issued). Anything else is final."""
        if not (attempts.ambiguous and self.started):
            raise error
        try:
            recovered = self._recovered(await self._read_view())
        except StaleToken:
            raise error from None
        if recovered is None:
            raise error
        self._t.stats.recoveries["read"] += 1
        return recovered

    async def _with_token(self, outcome: Outcome) -> Outcome:
        """A resumed stream's outcome, with the token its turn issued."""
        if outcome.continuation_token is not None or not outcome.committed:
            return outcome
        recovered = self._recovered(await self._read_view())
        if recovered is None or recovered.turn != outcome.turn:
            raise StaleToken("the turn committed, but the token it issued could not be recovered")
        return replace(outcome, continuation_token=recovered.continuation_token, recovered=True)

    def _recovered(self, view: SessionView) -> Outcome | None:
        """The last turn's outcome, if the read was made with the token that turn consumed
        (and that turn is the next one this session expects)."""
        last = view.last_outcome
        if not (isinstance(last, dict) and last.get("recovered") and last.get("continuationToken")):
            return None
        if self.turn is not None and last.get("turn") != self.turn + 1:
            return None
        return outcome_from(last, session_id=view.session_id, recovered=True)

    async def _reconcile(self) -> None:
        """Learn what became of the pending turn, whose input is not being sent again."""
        attempts = self._t.attempts()
        while self.started:
            view = await self._read_view()
            recovered = self._recovered(view)
            if recovered is not None:
                self._t.stats.recoveries["read"] += 1
                self._settle(recovered)
                return
            if view.status != "in-flight":
                break  # idle with the current token: it never committed
            await attempts.absorb(InFlight("the pending turn is still running", retry_after=1.0))
        self._pending = None  # (a start's key can only be replayed with its own input)
        self._save()

    # ------------------------------------------------------------------ state

    def _settle(self, outcome: Outcome) -> None:
        self.session_id = outcome.session_id
        if outcome.continuation_token is not None:
            self._token = outcome.continuation_token
        if outcome.committed:
            self.turn = outcome.turn
        self.outcome = outcome
        self._pending = None
        self._save()

    def _failed(self, error: BatonError) -> None:
        if isinstance(error, Closed):
            self.closed = True
        if error.reason not in UNDECIDED and self._pending is not None:
            self._pending = None  # it certainly did not commit: no key to keep
            self._save()

    def _save(self) -> None:
        key, print_ = self._pending or (None, None)
        self._store.save(SavedSession(self.session_id, self._token, key, print_))

    def _count_replay(self, again: bool) -> None:
        if again:
            self._t.stats.replays += 1
            self._t.stats.recoveries["replay"] += 1

    async def _read_view(self) -> SessionView:
        self._require_started()
        response = await self._t.call("GET", self._url(), headers=self._token_header())
        return session_view(response.json())

    def _require_started(self) -> None:
        if not self.started:
            raise NoSession("the session has not started: send its first turn")

    def _url(self, suffix: str = "") -> str:
        return f"/v1/session/{self.session_id}{suffix}"

    def _turn_url(self) -> str:
        return self._url("/message") if self.started else "/v1/session"

    def _token_header(self) -> dict[str, str]:
        return {TOKEN_HEADER: self._token or ""}

    def _turn_headers(self, key: str) -> dict[str, str]:
        return {KEY_HEADER: key, **(self._token_header() if self.started else {})}
