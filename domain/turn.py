"""One claimed turn, run: the handler under its lease and timeout, then commit or release.

These are the protocol's steps 3 and 4 (PROTOCOL section 2); the timers and tasks that
keep the turn within its lease and timeout are domain/supervision.py's.
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from baton.domain.commands import AppendRecord, CommitTurn, ReleaseTurn, RenewClaim
from baton.domain.decisions import ClaimGranted
from baton.domain.events import CloseCause, ReleaseCause
from baton.domain.handler import InvalidInput, Turn, TurnSink
from baton.domain.identifiers import (
    SessionId,
    TokenDigest,
    digest_token,
    mint_token,
    seal_token,
    seal_under_key,
)
from baton.domain.json import JsonObject, JsonValue, json_problem
from baton.domain.outcomes import Contended, HandlerOutcome, TurnOutcome, checked_outcome
from baton.domain.ports import StoreUnavailable
from baton.domain.recovery import Idempotency, Seal, key_digest
from baton.domain.supervision import ClaimLost, StopRequested, Supervisor, TimedOut
from baton.domain.values import value

if TYPE_CHECKING:
    from baton.domain.driver import TurnServices


@value
class TurnReply:
    """A turn that ran to an outcome; `token` is None only when nothing committed."""

    session_id: SessionId
    turn: int
    outcome: TurnOutcome
    token: str | None
    seq: int | None  # the committed outcome's seq in the session
    records: list[JsonValue]
    # A reply given again to a retry (PROTOCOL section 6.4), with its records' seqs.
    replayed: bool = False
    record_seqs: tuple[int, ...] = ()


@value
class TurnFailed:
    """The handler raised: nothing committed and the presented token stays valid."""

    session_id: SessionId
    turn: int
    message: str


CANCELLED_ERROR = "the turn was cancelled by the holder of its token"


@value
class TurnCancelled:
    """The holder of the token asked the turn to stop: nothing committed, the token stays
    valid (PROTOCOL section 6.5)."""

    session_id: SessionId
    turn: int


@value
class TurnInvalid:
    """The handler rejected the turn's input (InvalidInput): the client's error, 422.
    Nothing committed, the token stays valid (PROTOCOL section 4)."""

    session_id: SessionId
    turn: int
    message: str


@value
class Credentials:
    """What the client presented for a turn, kept in memory only for as long as it runs:
    the token that won the claim (None on a start) and its Idempotency-Key, from which the
    commit seals the token it issues (domain/recovery.py)."""

    token: str | None = None
    key: str | None = None  # the raw Idempotency-Key
    idempotency: Idempotency | None = None
    principal: str | None = None  # who claimed it: its every event names them
    # The token's digest: the claim presents it, the commit consumes it and the seal is
    # looked up by it, so it is computed once, here.
    consumed: TokenDigest | None = field(init=False)

    def __post_init__(self) -> None:
        digest = digest_token(self.token) if self.token else None
        object.__setattr__(self, "consumed", digest)


def failure_message(error: BaseException) -> str:
    return str(error) or type(error).__name__


class OpenTurn:
    """A claimed turn, ready to run once the transport is ready to carry it."""

    def __init__(
        self,
        services: "TurnServices",
        granted: ClaimGranted,
        input: JsonObject,
        credentials: Credentials,
    ) -> None:
        self._services = services
        self._claim = granted.claim
        self._state = granted.state.state
        self._input = input
        self._credentials = credentials
        self._supervisor = Supervisor(
            self._renew,
            self._asked_to_stop,
            services.timing(),
        )
        self.session_id = granted.state.session_id
        self.number = granted.event.turn
        self.claim_seq = granted.claim.seq  # where a stream of this turn resumes from

    def cancel(self) -> None:
        """A request to stop this turn reached this process: stop it at the next watch."""
        self._supervisor.request_stop()

    async def run(self, sink: TurnSink) -> TurnReply | TurnFailed | TurnCancelled | TurnInvalid:
        """Run the handler under its lease and timeout, then commit its outcome or release."""
        records: list[JsonValue] = []
        turn = Turn(
            self.session_id,
            self.number,
            self._input,
            self._state,
            self._appender(records, sink),
            sink.delta,
        )
        try:
            returned = await self._supervisor.run(self._services.handler(turn))
            outcome = checked_outcome(returned)
        except ClaimLost as lost:
            return self._reply(lost.contended, None, None, [])  # its records are void
        except StopRequested:
            await self._release(ReleaseCause.CANCELLED, CANCELLED_ERROR)
            return TurnCancelled(self.session_id, self.number)
        except TimedOut:
            message = f"the turn ran past its {self._services.turn_timeout:g} s timeout"
            return await self._fail(ReleaseCause.TIMED_OUT, message)
        except InvalidInput as invalid:
            await self._release(ReleaseCause.INVALID_INPUT, invalid.message)
            return TurnInvalid(self.session_id, self.number, invalid.message)
        except asyncio.CancelledError:
            await self._release(ReleaseCause.SHUT_DOWN, "the replica stopped before the turn ended")
            raise
        except StoreUnavailable:
            # Baton's database failed under the turn (a record could not be appended): an
            # outage, answered "unavailable" so the client retries, not the application's
            # failure. The session is freed now if the database answers, else at the lease.
            await self._release_quietly("the database became unavailable during the turn")
            raise
        except Exception as error:  # the application's failure, reported in-band
            return await self._fail(ReleaseCause.FAILED, failure_message(error))
        return await self._commit(outcome, records)

    def _appender(
        self, records: list[JsonValue], sink: TurnSink
    ) -> Callable[[JsonValue], Awaitable[None]]:
        store, clock = self._services.store, self._services.clock

        async def append(record: JsonValue) -> None:
            problem = json_problem(record)
            if problem is not None:
                raise TypeError(f"a record must be a JSON value: {problem}")
            command = AppendRecord(
                session_id=self.session_id,
                at=clock(),
                claim=self._claim,
                record=record,
                principal=self._credentials.principal,
            )
            appended = await store.append_record(command)
            if isinstance(appended, Contended):
                raise ClaimLost(appended)
            records.append(record)
            await sink.record(appended.seq, record)

        return append

    async def _renew(self) -> Contended | None:
        at = self._services.clock()
        command = RenewClaim(
            session_id=self.session_id,
            at=at,
            claim=self._claim,
            lease=self._services.lease(at),
            principal=self._credentials.principal,
        )
        try:
            renewed = await self._services.store.renew(command)
        except StoreUnavailable:
            return None  # the next beat tries again; the commit checks the claim anyway
        return renewed if isinstance(renewed, Contended) else None

    async def _asked_to_stop(self) -> bool:
        try:
            state = await self._services.store.load(self.session_id)
        except StoreUnavailable:
            return False  # the next watch asks again
        return state is not None and state.claim == self._claim and state.cancel_requested

    def _seal(self, token: str, at: datetime) -> Seal | None:
        """The issued token, sealed under what the client presented, for recovery."""
        presented, key = self._credentials.token, self._credentials.key
        lookup: str
        consumed = self._credentials.consumed
        if presented is not None and consumed is not None:
            lookup, sealed = consumed, seal_token(token, presented)
        elif key is not None:
            lookup = key_digest(key, self._credentials.principal)
            sealed = seal_under_key(token, key)
        else:
            return None  # an unkeyed start: the client that loses its reply starts again
        return Seal(
            lookup=lookup,
            session_id=self.session_id,
            turn=self.number,
            sealed=sealed,
            idempotency=self._credentials.idempotency,
            expires_at=at + timedelta(seconds=self._services.recovery_window),
        )

    async def _commit(self, outcome: HandlerOutcome, records: list[JsonValue]) -> TurnReply:
        token = mint_token(self._services.random_bytes)
        at = self._services.clock()
        command = CommitTurn(
            session_id=self.session_id,
            at=at,
            claim=self._claim,
            consumed=self._credentials.consumed,
            issued=digest_token(token),
            outcome=outcome,
            seal=self._seal(token, at),
            principal=self._credentials.principal,
        )
        try:
            committed = await self._services.store.commit(command)
        except BaseException:
            # Whether or not the commit landed, releasing is safe: after a landed commit the
            # claim is gone and the release does nothing. Without it, a commit that failed
            # would leave the session in flight with nobody to end the turn.
            await self._release_quietly("the commit did not complete")
            raise
        if isinstance(committed, Contended):
            return self._reply(committed, None, None, [])
        return self._reply(outcome, token, committed.seq, records)

    async def _fail(self, cause: ReleaseCause, message: str) -> TurnFailed:
        await self._release(cause, message)
        return TurnFailed(self.session_id, self.number, message)

    async def _release_quietly(self, error: str) -> None:
        with contextlib.suppress(Exception):  # a database still down: the lease lapses instead
            await self._release(ReleaseCause.UNAVAILABLE, error)

    async def _release(self, cause: ReleaseCause, error: str) -> None:
        await self._services.store.release(
            ReleaseTurn(
                session_id=self.session_id,
                at=self._services.clock(),
                claim=self._claim,
                cause=cause,
                error=error,
                # A start whose first turn fails fails as a whole (PROTOCOL section 4).
                close=CloseCause.START_FAILED if self._credentials.token is None else None,
                principal=self._credentials.principal,
            )
        )

    def _reply(
        self, outcome: TurnOutcome, token: str | None, seq: int | None, records: list[JsonValue]
    ) -> TurnReply:
        return TurnReply(self.session_id, self.number, outcome, token, seq, records)
