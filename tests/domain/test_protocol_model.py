"""The protocol against a reference model, over random sequences of turns and attacks.

Per session the model knows the current token, the tokens already consumed, the number of
committed turns and the handler state. The driver and the in-memory store must agree with
it after every step: a committed turn rotates the token, a failed one leaves it valid, a
consumed or forged token is refused, and of k claims racing on one token exactly one wins.
"""

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from baton.domain.driver import TurnDriver, TurnServices
from baton.domain.handler import Turn
from baton.domain.identifiers import SessionId, digest_token
from baton.domain.json import JsonValue
from baton.domain.outcomes import Finished, Parked
from baton.domain.refusals import Refusal, RefusalReason
from baton.domain.requests import ContinueRequest, StartRequest
from baton.domain.state import SessionStatus, fold
from baton.domain.turn import OpenTurn, TurnFailed, TurnReply
from tests.domain.fakes import FakeClock, InMemorySessionStore, RecordingSink, SeededRandom

T = TypeVar("T")

BEHAVIOURS = st.sampled_from(["finish", "park", "fail"])
PLANNED_FAILURE = "planned failure"


@dataclass
class SessionModel:
    token: str | None  # None: no token exists (the start failed, the session is closed)
    turns: int
    state: JsonValue
    consumed: set[str] = field(default_factory=set)

    @property
    def closed(self) -> bool:
        return self.token is None


class ProtocolModel(RuleBasedStateMachine):
    sessions = Bundle("sessions")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.store = InMemorySessionStore()
        self.driver = TurnDriver(
            TurnServices(self.store, self._handler, FakeClock(), SeededRandom("server"))
        )
        self.forger = SeededRandom("forger")
        self.models: dict[SessionId, SessionModel] = {}
        self.issued: set[str] = set()  # every token the server ever handed out
        self.committed_with: set[str] = set()  # tokens that opened a turn that committed
        self.consumed: list[tuple[SessionId, str]] = []

    def teardown(self) -> None:
        self.loop.close()

    # ------------------------------------------------------------------ plumbing

    def _await(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    async def _handler(self, turn: Turn) -> Finished | Parked:
        model = self.models.get(turn.session_id)
        assert turn.state == (model.state if model else None), "the handler saw a stale state"
        behaviour = turn.input["do"]
        if behaviour == "fail":
            raise RuntimeError(PLANNED_FAILURE)
        if behaviour == "park":
            return Parked({"turn": turn.number}, state={"turns": turn.number})
        return Finished({"turn": turn.number}, state={"turns": turn.number})

    def _open(self, session_id: str, token: str | None, do: str = "finish") -> OpenTurn | Refusal:
        return self._await(
            self.driver.open_continue(ContinueRequest(session_id, {"do": do}, token))
        )

    def _refused(self, session_id: str, token: str | None) -> RefusalReason:
        opened = self._open(session_id, token)
        assert isinstance(opened, Refusal), f"{token!r} opened a turn it should not have"
        return opened.reason

    def _forged(self) -> str:
        return "forged-" + self.forger(16).hex()

    def _run(self, session_id: SessionId, opened: OpenTurn, presented: str, do: str) -> None:
        """A turn was opened with `presented`: check the claim, run it, update the model."""
        model = self.models[session_id]
        assert presented not in self.committed_with, "a consumed token was accepted again"
        assert presented == model.token
        assert opened.number == model.turns + 1
        result = self._await(opened.run(RecordingSink()))
        if do == "fail":
            assert result == TurnFailed(session_id, model.turns + 1, PLANNED_FAILURE)
            state = self.store.sessions[session_id]
            assert (state.status, state.token_digest) == (
                SessionStatus.IDLE,
                digest_token(presented),
            ), "a failed turn did not leave the token valid"
            return
        assert isinstance(result, TurnReply)
        assert result.turn == model.turns + 1
        new = result.token
        assert new is not None
        assert new != presented
        assert new not in self.issued, "a token was issued twice"
        self.issued.add(new)
        self.committed_with.add(presented)
        self.consumed.append((session_id, presented))
        model.consumed.add(presented)
        model.token, model.turns, model.state = new, model.turns + 1, {"turns": model.turns + 1}
        assert self._refused(session_id, presented) is RefusalReason.STALE_TOKEN

    # ------------------------------------------------------------------ rules

    @rule(target=sessions, do=BEHAVIOURS)
    def start(self, do: str) -> SessionId:
        opened = self._await(self.driver.open_start(StartRequest({"do": do})))
        assert isinstance(opened, OpenTurn)
        assert opened.number == 1
        session_id = opened.session_id
        assert session_id not in self.models
        result = self._await(opened.run(RecordingSink()))
        if do == "fail":
            assert result == TurnFailed(session_id, 1, PLANNED_FAILURE)
            self.models[session_id] = SessionModel(token=None, turns=0, state=None)
        else:
            assert isinstance(result, TurnReply)
            assert result.turn == 1
            assert result.token is not None
            assert result.token not in self.issued
            self.issued.add(result.token)
            self.models[session_id] = SessionModel(result.token, 1, {"turns": 1})
        return session_id

    @rule(session_id=sessions, do=BEHAVIOURS)
    def continue_with_the_current_token(self, session_id: SessionId, do: str) -> None:
        model = self.models[session_id]
        if model.token is None:
            assert self._refused(session_id, self._forged()) is RefusalReason.STALE_TOKEN
            return
        opened = self._open(session_id, model.token, do)
        assert isinstance(opened, OpenTurn), opened
        self._run(session_id, opened, model.token, do)

    @rule(session_id=sessions, k=st.integers(2, 5), do=BEHAVIOURS)
    def concurrent_claims(self, session_id: SessionId, k: int, do: str) -> None:
        token = self.models[session_id].token
        if token is None:
            return

        async def race() -> list[OpenTurn | Refusal]:
            request = ContinueRequest(session_id, {"do": do}, token)
            return list(
                await asyncio.gather(*(self.driver.open_continue(request) for _ in range(k)))
            )

        results = self._await(race())
        winners = [result for result in results if isinstance(result, OpenTurn)]
        losers = [result for result in results if isinstance(result, Refusal)]
        assert len(winners) == 1, f"{len(winners)} of {k} claims with one token won"
        assert [loser.reason for loser in losers] == [RefusalReason.IN_FLIGHT] * (k - 1)
        self._run(session_id, winners[0], token, do)

    @precondition(lambda self: bool(self.consumed))
    @rule(data=st.data())
    def replay_a_consumed_token(self, data: st.DataObject) -> None:
        session_id, token = data.draw(st.sampled_from(self.consumed))
        assert self._refused(session_id, token) is RefusalReason.STALE_TOKEN

    @rule(session_id=sessions, forged=st.one_of(st.text(min_size=1, max_size=50), st.just("")))
    def present_a_forged_token(self, session_id: SessionId, forged: str) -> None:
        if forged in self.issued:
            return
        expected = RefusalReason.MISSING_TOKEN if forged == "" else RefusalReason.STALE_TOKEN
        assert self._refused(session_id, forged) is expected  # "" counts as absent

    @rule(session_id=sessions, other=sessions)
    def present_another_sessions_token(self, session_id: SessionId, other: SessionId) -> None:
        token = self.models[other].token
        if other == session_id or token is None:
            return
        assert self._refused(session_id, token) is RefusalReason.STALE_TOKEN

    @rule(session_id=sessions)
    def present_no_token(self, session_id: SessionId) -> None:
        assert self._refused(session_id, None) is RefusalReason.MISSING_TOKEN

    @rule(unknown=st.uuids())
    def name_an_unknown_session(self, unknown: Any) -> None:
        assert self._refused(str(unknown), self._forged()) is RefusalReason.UNKNOWN_SESSION

    # ------------------------------------------------------------------ invariants

    @invariant()
    def the_store_agrees_with_the_model(self) -> None:
        for session_id, model in self.models.items():
            state = self.store.sessions[session_id]
            assert state == fold(self.store.session_events(session_id))
            assert state.turn == model.turns
            assert state.state == model.state
            assert state.claim is None
            assert state.status is (SessionStatus.CLOSED if model.closed else SessionStatus.IDLE)
            expected_digest = digest_token(model.token) if model.token else None
            assert state.token_digest == expected_digest

    @invariant()
    def every_commit_consumed_the_token_the_one_before_issued(self) -> None:
        for session_id, model in self.models.items():
            commits = self.store.committed(session_id)
            assert [commit.turn for commit in commits] == list(range(1, model.turns + 1))
            consumed = [commit.consumed for commit in commits]
            assert consumed == [None, *(commit.issued for commit in commits)][: len(commits)]
            assert {digest_token(token) for token in model.consumed} == set(consumed) - {None}

    @invariant()
    def no_unique_key_was_ever_taken_twice(self) -> None:
        assert self.store.violations == []


TestTokensRotateOnceAndAreNeverAcceptedTwice = ProtocolModel.TestCase
TestTokensRotateOnceAndAreNeverAcceptedTwice.settings = settings(
    max_examples=60, stateful_step_count=25, deadline=None
)
