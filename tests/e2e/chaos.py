"""Chaos: replicas dying under load while clients misbehave, then an audit of the store.

Three `baton serve` replicas share one PostgreSQL database. Clients drive many sessions
through randomly chosen replicas; besides honest turns they replay tokens they already
spent and race their own current token. A killer `kill -9`s a random replica every few
seconds and starts it again. At the end an auditor reads the event table and the clients'
logs and checks that:
- every 200 a client received is a commit in the store;
- every token was consumed at most once;
- each session's chain of issued -> consumed tokens is unbroken;
- the sessions projection equals the one folded from the events alone;
- the replicas kept serving: after every kill, some turn commits within PROGRESS_SECONDS;
- every answer was JSON (a 5xx with another body is a finding, not a dead replica).

The clients' and the killer's choices come from one seeded generator; the seed is printed,
and `--seed` replays the same choices (the timing of a real run still varies).

`make chaos` runs the long form; tests/e2e/test_chaos.py a short one in `make test`.
"""

import argparse
import asyncio
import random
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.identifiers import digest_token
from infra.codec import row_to_state
from infra.projection import folded_sessions
from infra.tables import events, sessions
from tests.databases import fresh_database
from tests.e2e.server import BatonServer
from tests.e2e.store_probe import probe

REPLICAS = 3
LEASE_SECONDS = "1"  # a killed replica's sessions free up quickly
REQUEST_TIMEOUT = 10.0
PROGRESS_SECONDS = 5.0  # after a kill, some turn must commit within this long


@dataclass
class Session:
    session_id: str
    token: str
    spent: list[str] = field(default_factory=list)  # tokens this session consumed


@dataclass
class ClientLog:
    acknowledged: list[tuple[str, int, str]] = field(default_factory=list)  # (session, turn, token)
    acknowledged_at: list[float] = field(default_factory=list)  # loop time of each of those
    answers: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    recovered: int = 0


@dataclass
class Chaos:
    database: str
    replicas: list[BatonServer]
    rng: random.Random
    log: ClientLog = field(default_factory=ClientLog)
    kills: list[float] = field(default_factory=list)  # loop time of each kill

    def url(self) -> str:
        return self.rng.choice(self.replicas).url

    async def post(
        self, client: httpx.AsyncClient, path: str, body: dict[str, object]
    ) -> tuple[int, dict[str, object]]:
        """(status, body), or (0, {}) when the replica died under the request."""
        try:
            reply = await client.post(self.url() + path, json=body, timeout=REQUEST_TIMEOUT)
        except httpx.TransportError:
            return 0, {}
        try:
            answer = reply.json()
        except ValueError:
            self.log.violations.append(f"{reply.status_code} with a non-JSON body on {path}")
            return reply.status_code, {}
        return reply.status_code, answer if isinstance(answer, dict) else {}

    # -------------------------------------------------------------- a client's moves

    async def start(self, client: httpx.AsyncClient) -> Session:
        while True:
            status, body = await self.post(client, "/v1/session", {"message": "start"})
            self.log.answers[f"start {status}"] += 1
            if status == 200:
                session = Session(str(body["sessionId"]), str(body["continuationToken"]))
                self.acknowledge(session.session_id, 1, session.token)
                return session
            await asyncio.sleep(0.05)

    async def turn(self, client: httpx.AsyncClient, session: Session) -> None:
        """One honest turn with the current token, through whatever happens to replicas."""
        path = f"/v1/session/{session.session_id}/message"
        status, body = await self.post(
            client, path, {"message": "hello there", "continuationToken": session.token}
        )
        reason = str(body.get("reason", ""))
        self.log.answers[f"turn {status} {reason}".strip()] += 1
        if status == 200:
            self.advance(session, body)
        elif reason == "stale-token":
            await self.recover(client, session)
        elif status == 500:
            self.log.violations.append(f"500 on an honest turn: {body}")
        else:  # 503, in-flight behind a dead replica's claim, or the replica died
            await asyncio.sleep(0.1)

    async def replay(self, client: httpx.AsyncClient, session: Session) -> None:
        """Present a token this session already spent: never a 200."""
        if not session.spent:
            return
        old = self.rng.choice(session.spent)
        path = f"/v1/session/{session.session_id}/message"
        status, body = await self.post(
            client, path, {"message": "replay", "continuationToken": old}
        )
        self.log.answers[f"replay {status} {body.get('reason', '')}".strip()] += 1
        if status == 200:
            self.log.violations.append(f"a spent token was accepted again: {session.session_id}")

    async def race(self, client: httpx.AsyncClient, session: Session) -> None:
        """Present the current token three times at once: at most one may win."""
        path = f"/v1/session/{session.session_id}/message"
        body = {"message": "race", "continuationToken": session.token}
        replies = await asyncio.gather(*(self.post(client, path, body) for _ in range(3)))
        winners = [reply for status, reply in replies if status == 200]
        for status, reply in replies:
            self.log.answers[f"race {status} {reply.get('reason', '')}".strip()] += 1
        if len(winners) > 1:
            self.log.violations.append(
                f"{len(winners)} winners with one token: {session.session_id}"
            )
        elif winners:
            self.advance(session, winners[0])

    def advance(self, session: Session, body: dict[str, object]) -> None:
        if "continuationToken" not in body:  # contended: the turn did not commit
            return
        session.spent.append(session.token)
        session.token = str(body["continuationToken"])
        self.acknowledge(session.session_id, int(str(body["turn"])), session.token)

    def acknowledge(self, session_id: str, turn: int, token: str) -> None:
        self.log.acknowledged.append((session_id, turn, token))
        self.log.acknowledged_at.append(asyncio.get_running_loop().time())

    async def recover(self, client: httpx.AsyncClient, session: Session) -> None:
        """stale-token for the token we hold: our last turn committed but its reply was lost
        with the replica. Recover the token that commit issued through the API, with the
        token we presented (PROTOCOL section 6.2)."""
        path = f"{self.url()}/v1/session/{session.session_id}"
        try:
            read = await client.get(path, headers={"X-Continuation-Token": session.token})
        except httpx.TransportError:
            return  # try again on the next turn
        outcome = read.json().get("lastOutcome") if read.status_code == 200 else None
        if not outcome or not outcome.get("recovered"):
            self.log.violations.append(f"stale-token for an unspent token: {session.session_id}")
            return
        session.spent.append(session.token)
        session.token = str(outcome["continuationToken"])
        self.log.recovered += 1

    async def drive(self, sessions: list[Session], until: float) -> None:
        async with httpx.AsyncClient() as client:
            loop = asyncio.get_running_loop()
            while loop.time() < until:
                session = self.rng.choice(sessions)
                move = self.rng.random()
                if move < 0.75:
                    await self.turn(client, session)
                elif move < 0.9:
                    await self.replay(client, session)
                else:
                    await self.race(client, session)

    # -------------------------------------------------------------- the killer

    async def kill_replicas(self, until: float, every: float) -> None:
        """Kill a replica every `every` seconds or so, leaving the run's last
        PROGRESS_SECONDS without kills so that progress after each one can be judged."""
        loop = asyncio.get_running_loop()
        while True:
            pause = self.rng.uniform(every / 2, every * 1.5)
            if loop.time() + pause + PROGRESS_SECONDS >= until:
                return
            await asyncio.sleep(pause)
            victim = self.rng.choice(self.replicas)
            victim.kill()
            self.kills.append(loop.time())
            await asyncio.to_thread(victim.start)

    def stalls(self) -> list[str]:
        """Kills after which no turn committed within PROGRESS_SECONDS."""
        stalled = []
        for killed in self.kills:
            window = (killed, killed + PROGRESS_SECONDS)
            if not any(window[0] < at <= window[1] for at in self.log.acknowledged_at):
                stalled.append(f"no turn committed within {PROGRESS_SECONDS:g} s of a kill")
        return stalled


# ------------------------------------------------------------------ the audit


async def audit(engine: AsyncEngine, log: ClientLog) -> tuple[list[str], dict[str, int]]:
    problems = list(log.violations)
    async with engine.connect() as conn:
        stored = [dict(row._mapping) for row in await conn.execute(select(events))]
        projected = {
            str(row.session_id): dict(row._mapping) for row in await conn.execute(select(sessions))
        }
        folded = {f.state.session_id: f.row() async for f in folded_sessions(conn)}

    commits = {(str(e["session_id"]), e["issued"]): e for e in stored if e["kind"] == "committed"}
    for session_id, turn, token in log.acknowledged:
        commit = commits.get((session_id, digest_token(token)))
        if commit is None or commit["turn"] != turn:
            problems.append(f"a 200 that is not a commit: session {session_id} turn {turn}")

    consumed = Counter(e["consumed"] for e in stored if e["consumed"] is not None)
    problems += [f"token consumed {n} times" for n in consumed.values() if n > 1]

    chains: dict[str, list[dict[str, object]]] = {}
    for event in sorted(commits.values(), key=lambda e: int(str(e["seq"]))):
        chains.setdefault(str(event["session_id"]), []).append(event)
    for session_id, chain in chains.items():
        expected = None
        for commit in chain:
            if commit["consumed"] != expected:
                problems.append(f"broken token chain in session {session_id}")
                break
            expected = commit["issued"]

    for session_id, row in projected.items():
        rebuilt = folded.get(session_id)
        if rebuilt is None or row_to_state(row) != row_to_state(rebuilt):
            problems.append(f"projection differs from the events: session {session_id}")

    refusals = Counter(str(e["data"]["reason"]) for e in stored if e["kind"] == "refused")
    totals = {
        "turns committed": len(commits),
        "sessions": len(projected),
        **{f"refused {reason}": count for reason, count in sorted(refusals.items())},
    }
    return problems, totals


async def run(
    seconds: float, session_count: int, workers: int, kill_every: float, seed: int | None = None
) -> int:
    """The whole chaos run; the number of problems the audit found."""
    seed = seed if seed is not None else random.SystemRandom().randrange(2**32)
    print(f"chaos: seed {seed} (replay with --seed {seed})")
    with (
        tempfile.TemporaryDirectory() as scratch,
        fresh_database("postgresql", Path(scratch)) as database,
    ):
        replicas = [
            BatonServer(database, Path(scratch) / f"replica-{n}.log", "--lease", LEASE_SECONDS)
            for n in range(REPLICAS)
        ]
        for replica in replicas:
            await asyncio.to_thread(replica.start)
        chaos = Chaos(database, replicas, random.Random(seed))
        try:
            async with httpx.AsyncClient() as client:
                started = [await chaos.start(client) for _ in range(session_count)]
            until = asyncio.get_running_loop().time() + seconds
            shares = [started[n::workers] for n in range(workers)]
            await asyncio.gather(
                chaos.kill_replicas(until, kill_every),
                *(chaos.drive(share, until) for share in shares if share),
            )
        finally:
            for replica in replicas:
                replica.stop()
        async with probe(database) as engine:
            problems, totals = await audit(engine, chaos.log)
        problems += chaos.stalls()

    print(f"chaos: {seconds:g} s, {REPLICAS} replicas, {session_count} sessions, {workers} clients")
    print(f"  replica kills survived: {len(chaos.kills)}")
    for name, count in totals.items():
        print(f"  {name}: {count}")
    print(f"  200s acknowledged to clients: {len(chaos.log.acknowledged)}")
    print(f"  lost replies recovered by the consumed token: {chaos.log.recovered}")
    for answer, count in sorted(chaos.log.answers.items()):
        print(f"  client saw {answer}: {count}")
    for problem in problems:
        print(f"  PROBLEM: {problem}")
    print(f"  audit: {'PASSED' if not problems else f'{len(problems)} problems'}")
    return len(problems)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--kill-every", type=float, default=4.0)
    parser.add_argument("--seed", type=int, help="replay the choices of an earlier run")
    args = parser.parse_args()
    problems = asyncio.run(
        run(args.seconds, args.sessions, args.clients, args.kill_every, args.seed)
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
