"""Chaos: replicas dying and the database restarting under load while clients misbehave,
then an audit of the store.

Three `baton serve` replicas share one PostgreSQL database. Users, each holding a
baton_client session (tests/e2e/chaos_clients.py), drive many sessions through an
in-process load balancer that picks a replica per request and cuts some turn streams part
way; besides honest turns they abandon streams part way and carry on later, replay old
copies of their token file, and race copies of their current one. A killer `kill -9`s a
random replica every few seconds and starts it again; now and then the database "restarts":
it refuses connections for a moment and every backend of the run's database is terminated.
At the end an auditor reads the event table and the clients' logs and checks that:
- every outcome a client was given is a commit in the store, and every turn committed once;
- every token was consumed at most once;
- each session's chain of issued -> consumed tokens is unbroken, and its hash chains verify;
- the sessions projection equals the one folded from the events alone;
- the replicas kept serving: after every kill and every restart of the database, some turn
  commits within PROGRESS_SECONDS;
- every error answer was JSON (a 5xx with another body is a finding, not a dead replica).
The clients' own recoveries (baton_client's RecoveryStats) are printed by path.

All choices come from generators seeded from one seed; the seed is printed, and `--seed`
replays the same choices (the timing of a real run still varies).

`make chaos` runs the long form; tests/e2e/test_chaos.py a short one in `make test`.
"""

import argparse
import asyncio
import random
import re
import sys
import tempfile
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from baton_client import RecoveryStats
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.domain.identifiers import digest_token
from baton.infra.audit import verify
from baton.infra.projection import check_sessions
from baton.infra.tables import events, sessions
from tests.databases import POSTGRES_ADMIN_URL, fresh_database
from tests.e2e.chaos_clients import ClientLog, User, Users
from tests.e2e.server import BatonServer
from tests.e2e.store_probe import probe
from tests.pgbouncer import PgBouncer, running_pgbouncer

REPLICAS = 3
LEASE_SECONDS = "1"  # a killed replica's sessions free up quickly
PROGRESS_SECONDS = 5.0  # after a kill or a database restart, some turn must commit this soon
OUTAGE_SECONDS = (0.3, 1.5)  # how long a database restart refuses connections


@dataclass
class Operator:
    """Kills replicas and restarts the database; the two may overlap (a replica that starts
    while the database refuses connections cannot migrate and exits: it is started again)."""

    database: str
    replicas: list[BatonServer]
    kills: list[float] = field(default_factory=list)  # loop time of each kill
    restarts: list[float] = field(default_factory=list)  # loop time the database came back

    async def kill_replicas(self, rng: random.Random, until: float, every: float) -> None:
        """Kill a replica every `every` seconds or so (one of those up, never the last one up),
        and start it again meanwhile; the run's last PROGRESS_SECONDS have no kills, so that
        progress after each one can be judged."""
        loop = asyncio.get_running_loop()
        down: dict[BatonServer, asyncio.Task[None]] = {}
        while await _pause(rng, until, every):
            up = [replica for replica in self.replicas if replica not in down]
            if len(up) < 2:
                continue
            victim = rng.choice(up)
            victim.kill()
            self.kills.append(loop.time())
            down[victim] = asyncio.create_task(_start_again(victim))
            down[victim].add_done_callback(lambda _, victim=victim: down.pop(victim))
        await asyncio.gather(*down.values())

    async def restart_database(self, rng: random.Random, until: float, every: float) -> None:
        """A database restart without one: connections refused for a moment, and every
        connection to the run's database terminated (the replicas' pools, their listeners,
        queries under way)."""
        loop = asyncio.get_running_loop()
        name = self.database.rsplit("/", 1)[1]
        while await _pause(rng, until, every):
            await _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            try:
                await _admin(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    f" WHERE datname = '{name}' AND pid <> pg_backend_pid()"
                )
                await asyncio.sleep(rng.uniform(*OUTAGE_SECONDS))
            finally:
                await _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            self.restarts.append(loop.time())

    def stalls(self, log: ClientLog) -> list[str]:
        """Kills and database restarts after which no turn committed within PROGRESS_SECONDS."""
        stalled = []
        for what, times in (("a kill", self.kills), ("a database restart", self.restarts)):
            for at in times:
                if not any(at < acked <= at + PROGRESS_SECONDS for acked in log.acknowledged_at):
                    stalled.append(f"no turn committed within {PROGRESS_SECONDS:g} s of {what}")
        return stalled


async def _start_again(replica: BatonServer, tries: int = 50) -> None:
    for _ in range(tries - 1):
        try:
            await asyncio.to_thread(replica.start)
            return
        except RuntimeError:  # it exited early: the database was restarting
            await asyncio.sleep(0.2)
    await asyncio.to_thread(replica.start)


async def _pause(rng: random.Random, until: float, every: float) -> bool:
    """Wait about `every` seconds; False (at once) if that would come within
    PROGRESS_SECONDS of `until`."""
    pause = rng.uniform(every / 2, every * 1.5)
    if asyncio.get_running_loop().time() + pause + PROGRESS_SECONDS >= until:
        return False
    await asyncio.sleep(pause)
    return True


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


# ------------------------------------------------------------------ the audit


SESSION_NAMED = re.compile(r"\(session ([0-9a-f-]{36});")


def _histories(problems: list[str], stored: list[dict[str, Any]]) -> list[str]:
    """The stored history of each session a client's violation names, one line an event
    (digests cut to 8 characters), so that a rare failure can be read from its report."""
    named = {match for problem in problems for match in SESSION_NAMED.findall(problem)}
    lines = []
    for session_id in sorted(named):
        mine = sorted(
            (e for e in stored if str(e["session_id"]) == session_id), key=lambda e: e["position"]
        )
        for e in mine:
            data = e["data"] if isinstance(e["data"], dict) else {}
            detail = {k: data[k] for k in ("reason", "cause", "via", "owner") if k in data}
            lines.append(
                f"history {session_id[-12:]}: {e['recorded_at']:%H:%M:%S.%f} {e['kind']} "
                f"turn {e['turn']} seq {e['seq']} consumed {str(e['consumed'])[:8]} "
                f"issued {str(e['issued'])[:8]} {detail}"
            )
    return lines


async def audit(engine: AsyncEngine, log: ClientLog) -> tuple[list[str], dict[str, int]]:
    problems = list(log.violations)
    async with engine.connect() as conn:
        stored = [dict(row._mapping) for row in await conn.execute(select(events))]
        session_rows = len((await conn.execute(select(sessions.c.session_id))).all())

    committed = [e for e in stored if e["kind"] == "committed"]
    commits = {(str(e["session_id"]), e["issued"]): e for e in committed}
    for session_id, turn, token in log.acknowledged:
        commit = commits.get((session_id, digest_token(token)))
        if commit is None or commit["turn"] != turn:
            problems.append(f"an outcome that is not a commit: session {session_id} turn {turn}")
    per_turn = Counter((str(e["session_id"]), e["turn"]) for e in committed)
    problems += [
        f"turn {turn} of {sid} committed {n} times" for (sid, turn), n in per_turn.items() if n > 1
    ]

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
    problems += [f"hash chain: {broken}" async for broken in verify(engine, None)]

    differing = await check_sessions(engine)  # what `baton replay --check` reports
    problems += [f"projection differs from the events: session {sid}" for sid in differing]

    problems += _histories(problems, stored)
    refusals = Counter(str(e["data"]["reason"]) for e in stored if e["kind"] == "refused")
    totals = {
        "turns committed": len(commits),
        "sessions": session_rows,
        **{f"refused {reason}": count for reason, count in sorted(refusals.items())},
    }
    return problems, totals


# ------------------------------------------------------------------ the run


@dataclass
class Result:
    seed: int
    problems: list[str]
    kills: int
    restarts: int
    log: ClientLog
    stats: RecoveryStats


async def run(
    seconds: float,
    session_count: int,
    workers: int,
    kill_every: float,
    restart_every: float,
    seed: int | None = None,
    pgbouncer: PgBouncer | None = None,
) -> Result:
    """The whole chaos run, its summary printed; with `pgbouncer`, the replicas and the
    audit reach the database through it (transaction pooling), migrations directly."""
    seed = seed if seed is not None else random.SystemRandom().randrange(2**32)
    print(f"chaos: seed {seed} (replay with --seed {seed})")
    choices = random.Random(seed)
    with (
        tempfile.TemporaryDirectory() as scratch,
        fresh_database("postgresql", Path(scratch)) as database,
    ):
        url, environ = (database, {}) if pgbouncer is None else _pooled(pgbouncer, database)
        replicas = [
            BatonServer(url, Path(scratch) / f"replica-{n}.log", "--lease", LEASE_SECONDS)
            for n in range(REPLICAS)
        ]
        for replica in replicas:
            replica.environ = environ
        for replica in replicas:
            await asyncio.to_thread(replica.start)
        operator = Operator(database, replicas)
        users = Users([replica.port for replica in replicas], choices.getrandbits(64))
        try:
            shares = await _start(users, session_count, workers)
            until = asyncio.get_running_loop().time() + seconds
            await asyncio.gather(
                operator.kill_replicas(_fork(choices), until, kill_every),
                operator.restart_database(_fork(choices), until, restart_every),
                *(users.drive(share, users.worker_rng(), until) for share in shares if share),
            )
            overrun = asyncio.get_running_loop().time() - until
        finally:
            await users.aclose()
            for replica in replicas:
                replica.stop()
        audited = database if pgbouncer is None else pgbouncer.settings(database)
        async with probe(audited) as engine:
            problems, totals = await audit(engine, users.log)
        problems += operator.stalls(users.log)

    result = Result(
        seed, problems, len(operator.kills), len(operator.restarts), users.log, users.stats
    )
    print(
        f"chaos: {seconds:g} s (and {overrun:.1f} s for the last moves to end), {REPLICAS}"
        f" replicas, {session_count} sessions, {workers} clients"
        + (f", through PgBouncer on port {pgbouncer.port}" if pgbouncer else "")
    )
    _summary(result, totals)
    return result


async def _start(users: Users, session_count: int, workers: int) -> list[list[User]]:
    """Each worker's users, their sessions started."""

    async def share(count: int) -> list[User]:
        started = [await users.start() for _ in range(count)]
        return [user for user in started if user is not None]

    counts = [len(range(n, session_count, workers)) for n in range(workers)]
    return list(await asyncio.gather(*(share(count) for count in counts)))


def _pooled(pgbouncer: PgBouncer, database: str) -> tuple[str, dict[str, str]]:
    return pgbouncer.url(database), pgbouncer.environ(database)


def _fork(rng: random.Random) -> random.Random:
    return random.Random(rng.getrandbits(64))


def _summary(result: Result, totals: dict[str, int]) -> None:
    log, stats = result.log, result.stats
    print(f"  replica kills survived: {result.kills}")
    print(f"  database restarts survived: {result.restarts}")
    print(f"  turn streams cut by the network: {log.cuts}")
    for name, count in totals.items():
        print(f"  {name}: {count}")
    print(f"  outcomes given to clients: {len(log.acknowledged)}")
    print("  client recovery (baton_client RecoveryStats of the users' client):")
    for path in RECOVERY_PATHS:
        print(f"    lost replies recovered by {path}: {stats.recoveries[path]}")
    print(f"    replayed answers: {stats.replays}")
    print(f"    resumed event streams: {stats.resumed_streams}")
    print(f"    in-flight answers waited out: {stats.in_flight_waits}")
    causes = ", ".join(f"{cause} {n}" for cause, n in stats.retry_causes.most_common())
    print(f"    retries: {stats.retries} ({causes})")
    print(f"  abandoned turns that held their session in-flight: {log.stuck}")
    for answer, count in sorted(log.answers.items()):
        print(f"  clients saw {answer}: {count}")
    for answer, count in sorted(log.wire.items()):
        print(f"  the balancer passed on {answer}: {count}")
    for problem in result.problems:
        print(f"  PROBLEM: {problem}")
    print(f"  audit: {'PASSED' if not result.problems else f'{len(result.problems)} problems'}")


RECOVERY_PATHS = ("replay", "read", "events-resume")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--kill-every", type=float, default=4.0)
    parser.add_argument("--restart-every", type=float, default=15.0)
    parser.add_argument("--seed", type=int, help="replay the choices of an earlier run")
    parser.add_argument(
        "--pgbouncer", action="store_true", help="through pgbouncer in transaction mode"
    )
    args = parser.parse_args()
    with running_pgbouncer() if args.pgbouncer else nullcontext() as bouncer:
        result = asyncio.run(
            run(
                args.seconds,
                args.sessions,
                args.clients,
                args.kill_every,
                args.restart_every,
                args.seed,
                bouncer,
            )
        )
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
