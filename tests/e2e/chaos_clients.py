"""The chaos run's clients (tests/e2e/chaos.py): users holding baton_client sessions.

Every session is a baton_client `AsyncSession`: the library keeps and rotates its token,
sends each turn with an Idempotency-Key, retries, and recovers lost replies; nothing here
touches a token or a key. A user's moves:
- a turn, buffered or streamed (a stream the network cuts part way is the library's to
  resume from the session's events, or to send again);
- a stream abandoned part way on purpose; the user carries on later with the same message
  (the library sends it with the same key: the server replays the committed turn) or a new
  one (the library first reads the session to learn what became of the abandoned turn);
- an old copy of the session's token file, replayed by a client of its own: never a 200;
- three clients racing with copies of the current token file, each with its own key: at
  most one wins, and the user carries on with the session that won.
The replicas are reached through `Balancer`, an in-process load balancer that picks a
replica per request and cuts some turn streams part way, as a network drops a connection.

The clients never read the database: all they know comes from the API (the audit reads
the store afterwards; tests/e2e/test_chaos.py checks what this module imports).
"""

import asyncio
import contextlib
import json
import random
from collections import Counter, deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from baton_client import (
    AsyncClient,
    AsyncSession,
    BatonError,
    InFlight,
    InternalError,
    MemoryTokenStore,
    Outcome,
    RecoveryStats,
    RetryPolicy,
    SavedSession,
    StaleToken,
    Unavailable,
)

REQUEST_TIMEOUT = 10.0
# The users' client: patient enough to outlast a replica's kill -9 (its sessions' claims
# lapse after the run's 1 s lease) and a database outage; resumed streams that stay silent
# for 2 s (they follow a dead replica's claim) send the turn again.
PATIENT = RetryPolicy(
    max_attempts=100,
    deadline=30.0,
    base_delay=0.05,
    max_delay=0.5,
    max_retry_after=0.5,
    in_flight_wait=6.0,
    resume_idle=2.0,
)
# Intruders and racers: one attempt, no waiting out `in-flight`, so no recovery either.
STRICT = RetryPolicy(max_attempts=1, in_flight_wait=0.0)
CUT_RATE = 0.3  # the share of turn streams the network cuts part way
RACERS = 3


@dataclass
class ClientLog:
    acknowledged: list[tuple[str, int, str]] = field(default_factory=list)  # (session, turn, token)
    acknowledged_at: list[float] = field(default_factory=list)  # loop time of each of those
    answers: Counter[str] = field(default_factory=Counter)  # what the users saw, by move
    wire: Counter[str] = field(default_factory=Counter)  # HTTP answers the balancer passed on
    violations: list[str] = field(default_factory=list)
    cuts: int = 0  # turn streams the network cut part way
    stuck: int = 0  # abandoned turns that held their session up (see `_carry_on`)


# ------------------------------------------------------------------ the network


class Cut(httpx.AsyncByteStream):
    """A response body that breaks off after `chunks` chunks, as a dropped connection does."""

    def __init__(self, inner: httpx.AsyncByteStream, chunks: int, log: ClientLog) -> None:
        self._inner, self._chunks, self._log = inner, chunks, log

    async def __aiter__(self) -> AsyncIterator[bytes]:
        passed = 0
        async for chunk in self._inner:
            if passed == self._chunks:
                self._log.cuts += 1
                raise httpx.ReadError("the chaos run's network cut this stream")
            passed += 1
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class Balancer(httpx.AsyncBaseTransport):
    """A load balancer in the client's process: each request goes to a replica picked at
    random; a share (`cut_rate`) of turn streams is cut part way (the replica sees its client
    go away, and the turn goes on); every error answer must be a JSON `{"error", "reason"}`."""

    def __init__(
        self, ports: Sequence[int], rng: random.Random, log: ClientLog, cut_rate: float
    ) -> None:
        self._ports, self._rng, self._log, self._cut_rate = list(ports), rng, log, cut_rate
        self._http = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        port = self._rng.choice(self._ports)
        request.url = request.url.copy_with(port=port)
        request.headers["Host"] = f"{request.url.host}:{port}"
        response = await self._http.handle_async_request(request)
        if response.status_code != 200:
            return await self._error_answer(request, response)
        self._log.wire["200"] += 1
        streamed = request.headers.get("Accept") == "text/event-stream"
        if request.method == "POST" and streamed and self._rng.random() < self._cut_rate:
            assert isinstance(response.stream, httpx.AsyncByteStream)
            cut = Cut(response.stream, self._rng.randrange(4), self._log)
            return self._with_body(response, cut)
        return response

    async def _error_answer(
        self, request: httpx.Request, response: httpx.Response
    ) -> httpx.Response:
        assert isinstance(response.stream, httpx.AsyncByteStream)
        try:
            body = b"".join([chunk async for chunk in response.stream])
        finally:
            await response.aclose()
        try:
            reason = json.loads(body)["reason"]
        except (ValueError, KeyError, TypeError):
            reason = "?"
            violation = f"{response.status_code} with a non-JSON body on {request.url.path}"
            self._log.violations.append(violation)
        self._log.wire[f"{response.status_code} {reason}"] += 1
        return self._with_body(response, httpx.ByteStream(body))

    @staticmethod
    def _with_body(response: httpx.Response, body: httpx.AsyncByteStream) -> httpx.Response:
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=body,
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._http.aclose()


# ------------------------------------------------------------------ the users


@dataclass
class User:
    """One user, holding one session in a token store (in memory: the run is one process)."""

    session: AsyncSession
    store: MemoryTokenStore
    last_turn: int = 0
    messages: int = 0  # messages written so far: each new message is unique in its session
    abandoned: dict[str, Any] | None = None  # the input of a stream given up part way
    copies: list[SavedSession] = field(default_factory=list)  # old copies of the token file
    # The user's last moves and what each left (no token): a violation names them, so that
    # a rare failure can be read from the report of the run it happened in.
    moves: deque[str] = field(default_factory=lambda: deque(maxlen=8))

    def note(self, move: str) -> None:
        pending = " pending" if self.session.pending else ""
        self.moves.append(f"{move} -> turn {self.session.turn}{pending}")

    def new_input(self, what: str) -> dict[str, Any]:
        self.messages += 1
        return {"message": f"{what} {self.messages}"}


class Users:
    def __init__(self, ports: Sequence[int], seed: int) -> None:
        rng = random.Random(seed)
        self.log = ClientLog()
        base_url = f"http://127.0.0.1:{ports[0]}"  # the Balancer picks the replica
        network = Balancer(ports, random.Random(rng.getrandbits(64)), self.log, CUT_RATE)
        self.client = AsyncClient(
            base_url, retry=PATIENT, timeout=REQUEST_TIMEOUT, transport=network
        )
        plain = Balancer(ports, random.Random(rng.getrandbits(64)), self.log, 0.0)
        self.intruders = AsyncClient(
            base_url, retry=STRICT, timeout=REQUEST_TIMEOUT, transport=plain
        )
        self._rng = rng

    @property
    def stats(self) -> RecoveryStats:
        """What the users' client did to recover (the intruders' client never recovers)."""
        return self.client.stats

    def worker_rng(self) -> random.Random:
        return random.Random(self._rng.getrandbits(64))

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.intruders.aclose()

    async def start(self) -> User | None:
        store = MemoryTokenStore()
        try:
            session = await self.client.start({"message": "start"}, store=store)
        except BatonError as error:
            self.log.violations.append(f"a start failed: {error}")
            return None
        user = User(session, store)
        assert session.outcome is not None
        self._acknowledge(user, {"message": "start"}, session.outcome)
        return user

    async def drive(self, users: list[User], rng: random.Random, until: float) -> None:
        """One worker: moves on its own users, one at a time, until loop time `until`."""
        loop = asyncio.get_running_loop()
        while loop.time() < until:
            user = rng.choice(users)
            move = rng.random()
            if move < 0.40:
                await self.turn(user, rng, streamed=False)
                user.note("buffered")
            elif move < 0.65:
                await self.turn(user, rng, streamed=True)
                user.note("streamed")
            elif move < 0.77:
                await self.abandon(user, rng)
                user.note("abandon")
            elif move < 0.90:
                await self.replay(user, rng)
                user.note("replay")
            else:
                await self.race(user, rng)
                user.note("race")

    def _violated(self, user: User, what: str) -> None:
        moves = "; ".join(user.moves) or "none"
        self.log.violations.append(f"{what} (session {user.session.session_id}; moves: {moves})")

    # -------------------------------------------------------------- honest moves

    async def turn(self, user: User, rng: random.Random, *, streamed: bool) -> None:
        again = user.abandoned is not None and rng.random() < 0.5
        turn = user.abandoned if again and user.abandoned is not None else user.new_input("turn")
        kind = "streamed" if streamed else "buffered"
        try:
            outcome = await (self._streamed(user, turn) if streamed else user.session.send(turn))
        except InFlight as error:
            await self._carry_on(user, error)
            return
        except BatonError as error:
            self._violated(user, f"an honest {kind} turn failed: {error}")
            return
        self.log.answers[f"{kind} turn{' (abandoned one again)' if again else ''}"] += 1
        self._acknowledge(user, turn, outcome)

    async def abandon(self, user: User, rng: random.Random) -> None:
        """Stream a turn and go away after its first events; the user comes back to it later."""
        turn = user.new_input("abandoned")
        stay_for = rng.randint(1, 3)
        try:
            async with contextlib.aclosing(user.session.stream(turn)) as events:
                async for event in events:
                    if isinstance(event, Outcome):  # it ended before the user left
                        self.log.answers["abandoned stream ended first"] += 1
                        self._acknowledge(user, turn, event)
                        return
                    stay_for -= 1
                    if not stay_for:
                        break
        except InFlight as error:
            await self._carry_on(user, error)
            return
        except BatonError as error:
            self._violated(user, f"an abandoned stream failed before it was left: {error}")
            return
        self.log.answers["stream abandoned part way"] += 1
        user.abandoned = turn

    async def _streamed(self, user: User, turn: dict[str, Any]) -> Outcome:
        outcome = None
        async for event in user.session.stream(turn):
            if isinstance(event, Outcome):
                outcome = event
        if outcome is None:
            raise InternalError("a turn stream ended without an outcome")
        return outcome

    async def _carry_on(self, user: User, error: InFlight) -> None:
        """`in-flight` for a new message while an abandoned turn is pending: its replica died
        before it committed, so its claim lapses but holds the session `in-flight` until a
        claim takes it over, and the library's read (AsyncSession._reconcile) only waits.
        The user sends the abandoned message again: with its key, that claim takes over."""
        if user.abandoned is None:
            self._violated(user, f"an honest turn gave up on in-flight: {error}")
            return
        self.log.stuck += 1
        try:
            outcome = await user.session.send(user.abandoned)
        except BatonError as again:
            self._violated(user, f"an abandoned turn could not be sent again: {again}")
            return
        self._acknowledge(user, user.abandoned, outcome)

    def _acknowledge(self, user: User, turn: dict[str, Any], outcome: Outcome) -> None:
        """An outcome the library returned: what the audit checks against the store."""
        user.abandoned = None  # sent again, or settled by the library before this turn
        session_id = outcome.session_id
        if not outcome.committed:
            self.log.answers["contended"] += 1
            return
        if outcome.turn <= user.last_turn:
            self.log.violations.append(
                f"turn {outcome.turn} after turn {user.last_turn}: session {session_id}"
            )
        expected = {"reply": f"You said: {turn['message']}", "turn": outcome.turn}
        if outcome.output != expected:
            self.log.violations.append(f"{outcome.output} for {turn}: session {session_id}")
        token = outcome.continuation_token
        if token is None:
            self.log.violations.append(f"a committed outcome without a token: {session_id}")
            return
        user.last_turn = outcome.turn
        self.log.acknowledged.append((session_id, outcome.turn, token))
        self.log.acknowledged_at.append(asyncio.get_running_loop().time())
        saved = user.store.load()
        if saved is not None:
            user.copies.append(saved)  # the token file as it is now, for a later replay

    # -------------------------------------------------------------- misbehaving

    async def replay(self, user: User, rng: random.Random) -> None:
        """An intruder with an old copy of the token file (its token spent since): never a 200."""
        if len(user.copies) < 2:
            return
        old = rng.choice(user.copies[:-1])
        intruder = self.intruders.resume(MemoryTokenStore(old))
        try:
            await intruder.send({"message": "replayed"})
        except StaleToken:
            self.log.answers["replayed spent token: stale-token"] += 1
        except Unavailable:
            self.log.answers["replayed spent token: unavailable"] += 1
        except BatonError as error:
            self.log.violations.append(f"a spent token answered {error}: {old.session_id}")
        else:
            self.log.violations.append(f"a spent token was accepted again: {old.session_id}")

    async def race(self, user: User, rng: random.Random) -> None:
        """Three clients with copies of the current token file send a turn at once, each
        with its own key: at most one wins; the user carries on with the winner's file."""
        if user.session.pending:  # an abandoned turn first: the library settles it
            await self.turn(user, rng, streamed=False)
            return
        saved = user.store.load()
        stores = [MemoryTokenStore(saved) for _ in range(RACERS)]
        turn = user.new_input("race")
        racers = [self.intruders.resume(store) for store in stores]
        answers = await asyncio.gather(*(r.send(turn) for r in racers), return_exceptions=True)
        for answer in answers:
            if not isinstance(answer, Outcome | BatonError):
                raise answer
            self.log.answers[f"race: {_answer_name(answer)}"] += 1
        won = [
            (store, answer)
            for store, answer in zip(stores, answers, strict=True)
            if isinstance(answer, Outcome) and answer.committed
        ]
        if len(won) > 1:
            self.log.violations.append(f"{len(won)} winners with one token: {saved}")
        if won:
            store, outcome = won[0]
            user.session, user.store = self.client.resume(store), store
            self._acknowledge(user, turn, outcome)
            return
        lost = [s for s, a in zip(stores, answers, strict=True) if _undecided(a)]
        if lost and not await self._settle_race(user, lost, turn):
            self._violated(user, f"no racer holds the session: {saved}")

    async def _settle_race(
        self, user: User, lost: list[MemoryTokenStore], turn: dict[str, Any]
    ) -> bool:
        """No racer heard it won, but one whose answer was lost may have. Each such racer's
        token file, in the users' client, sends the race's turn again with the racer's key:
        the one that won is replayed, the others get stale-token; if none had won, the
        first one runs the turn now. The user carries on with that file."""
        for store in lost:
            session = self.client.resume(store)
            try:
                outcome = await session.send(turn)
            except StaleToken:
                continue
            except BatonError as error:
                self._violated(user, f"a racer's lost turn could not be settled: {error}")
                return True
            user.session, user.store = session, store
            self._acknowledge(user, turn, outcome)
            return True
        return False


def _answer_name(answer: Outcome | BaseException) -> str:
    if isinstance(answer, Outcome):
        return "won"
    return f"lost {answer.reason}" if isinstance(answer, BatonError) else type(answer).__name__


def _undecided(answer: Outcome | BaseException) -> bool:
    return isinstance(answer, Unavailable | InternalError)
