"""The flood of issue 13: junk continues at one session while its owner runs turns.

One `baton serve` on a fresh database, with a per-client refusal limit (FLOOD_REFUSAL_LIMIT
refusals per FLOOD_REFUSAL_WINDOW seconds). Its owner, from 127.0.0.1, runs sequential
buffered turns (c1) in the load generator's process: first alone for a warm-up and a
measured window, then on while a flood of `flood_requests` continues with forged tokens hits
the same session (its id is no secret) from FLOOD_CONCURRENCY connections of another client,
127.0.0.2, in a process of its own (spawned, as the load generator is), so the flood's CPU
is not spent in the owner's event loop. The server answers the flooder refusals (stored) up
to the limit, then 429 `too-many-refusals` (stored nothing) until the window ends, at most
FLOOD_REFUSAL_PACE of them a second, so the flood lasts about requests / pace seconds.

The row: the owner's turns that began while the flood ran (rate, p50, p99), next to its p50
alone; the flood's answers by status; and the `refused` events stored during the flood,
counted in the database before and after. bench/goals.py judges both claims of issue 13.

The two processes share no clock but the system's: `time.monotonic` (CLOCK_MONOTONIC), the
same in every process, so the owner's turns are placed against the flood's start and end.
"""

import asyncio
import http.client
import multiprocessing
import secrets
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from time import monotonic
from types import TracebackType
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from baton.domain.events import EventKind
from baton.domain.identifiers import mint_token
from baton.infra.tables import events
from bench import rows
from bench.clients import START_PATH, TOKEN_HEADER, TURN_BODY, RestClient
from bench.config import (
    FLOOD_CONCURRENCY,
    FLOOD_REFUSAL_LIMIT,
    FLOOD_REFUSAL_PACE,
    FLOOD_REFUSAL_WINDOW,
    RunConfig,
)
from bench.http_client import HttpConnection, request_bytes
from bench.loadgen import LoadGenerator
from bench.measure import ERROR, OK, REFUSED, cpu_seconds
from bench.progress import progress
from bench.rows import Row
from bench.servers import HOST, baton_server
from bench.stats import counts, percentile_ms, summarize_latency
from bench.wire import decode_wire

clock = monotonic  # system-wide: the owner's and the flooder's timestamps compare
OWNER_SOURCE = "127.0.0.1"  # the owner, and the server's address
FLOOD_SOURCE = "127.0.0.2"  # another client to the refusal limit (all of 127/8 is loopback)
# Time for the owner's job to reach the load generator's idle worker before its warm-up.
START_MARGIN_SECONDS = 0.2
# A flood still unanswered by then: the server hung. Far above what the pace makes a full
# run's flood last (10,000 / FLOOD_REFUSAL_PACE: about 10 s).
FLOOD_TIMEOUT_SECONDS = 120.0
# An answer whose body is not Baton's JSON: counted under its status and this word.
UNREADABLE = "unreadable"


@dataclass(frozen=True, slots=True)
class OwnerSpec:
    port: int
    session_id: str
    token: str  # the session's current token: the owner chains from it
    stop_path: str  # the owner stops at its next turn once this file exists
    deadline: float  # clock(): and in any case by then


@dataclass(frozen=True, slots=True)
class FloodSpec:
    port: int
    session_id: str
    requests: int
    concurrency: int
    start_at: float  # clock(): the flood's connections are open and wait for this moment


# ------------------------------------------------------------------ the owner (load generator)


def run_owner(spec: OwnerSpec) -> dict[str, Any]:
    """Runs in the load generator's worker."""
    return asyncio.run(_owner(spec))


async def _owner(spec: OwnerSpec) -> dict[str, Any]:
    """Turn after turn until told to stop: every committed turn's (began, ended)."""
    client = RestClient(HOST, spec.port)
    client.http.source = OWNER_SOURCE
    client.adopt(spec.session_id, spec.token)
    stop = Path(spec.stop_path)
    turns: list[tuple[float, float]] = []
    refusals: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    wall_before, cpu_before = clock(), cpu_seconds()
    try:
        # One stat of a local file between turns, outside the timed span: cheaper than any
        # message from another process.
        while not stop.exists() and clock() < spec.deadline:  # noqa: ASYNC240
            began = clock()
            try:
                kind, detail = await client.turn()
            except Exception as error:  # a dropped connection, a malformed reply: count it
                kind, detail = ERROR, type(error).__name__
            if kind == OK:
                turns.append((began, clock()))
                continue
            (refusals if kind == REFUSED else errors)[detail] += 1
            if detail != "in-flight":  # the owner's token may be gone: its chain ends here
                break
    finally:
        await client.close()
    wall = clock() - wall_before
    return {
        "turns": turns,
        "refusals": counts(refusals),
        "errors": counts(errors),
        "cpu": (cpu_seconds() - cpu_before) / wall if wall > 0 else None,
    }


# ------------------------------------------------------------------ the flooder (own process)


def run_flood_load(spec: FloodSpec) -> dict[str, Any]:
    """Runs in the flooder's process."""
    return asyncio.run(_flood_within(spec, FLOOD_TIMEOUT_SECONDS))


async def _flood_within(spec: FloodSpec, seconds: float) -> dict[str, Any]:
    try:
        async with asyncio.timeout(seconds):
            return await _flood(spec)
    except TimeoutError:
        raise TimeoutError(f"the flood was not answered within {seconds:.0f} s") from None


def junk_continues(session_id: str, authority: str, requests: int) -> list[bytes]:
    """Continues at the session, each with a token of its own that the server never issued
    (a real token's shape: 256 random bits)."""
    path = f"{START_PATH}/{session_id}/message"
    return [
        request_bytes(
            "POST", path, authority, TURN_BODY, ((TOKEN_HEADER, mint_token(secrets.token_bytes)),)
        )
        for _ in range(requests)
    ]


async def _flood(spec: FloodSpec) -> dict[str, Any]:
    connections = [
        HttpConnection(HOST, spec.port, source=FLOOD_SOURCE) for _ in range(spec.concurrency)
    ]
    junk = iter(junk_continues(spec.session_id, connections[0].authority, spec.requests))
    answers: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    await asyncio.gather(*(connection.open() for connection in connections))
    try:
        await asyncio.sleep(max(0.0, spec.start_at - clock()))
        started, cpu_before = clock(), cpu_seconds()
        await asyncio.gather(*(_pump(c, junk, answers, errors) for c in connections))
        ended, cpu_after = clock(), cpu_seconds()
    finally:
        await asyncio.gather(*(c.close() for c in connections), return_exceptions=True)
    seconds = ended - started
    return {
        "started": started,
        "ended": ended,
        "seconds": seconds,
        "answers": counts(answers),
        "errors": counts(errors),
        "cpu": (cpu_after - cpu_before) / seconds if seconds > 0 else None,
    }


async def _pump(
    connection: HttpConnection,
    junk: Iterator[bytes],
    answers: Counter[str],
    errors: Counter[str],
) -> None:
    """One connection: the next junk continue as soon as the last is answered. The
    connections share one iterator, so together they send each request once."""
    for request in junk:
        try:
            response = await connection.request(request)
        except Exception as error:  # a dropped connection: count it, reconnect for the next
            errors[type(error).__name__] += 1
            await connection.close()
            continue
        try:
            reason = decode_wire(response.body).reason or ""
        except ValueError:  # msgspec's DecodeError is one
            reason = UNREADABLE
        answers[f"{response.status} {reason}".rstrip()] += 1


def imported(_: object = None) -> dict[str, Any]:
    """Submitted first to each process, so that it has started and imported this module
    (SQLAlchemy and the tables with it) before the clock matters."""
    return {}


class Flooder:
    """The flood's process, for the length of a `with` block. It starts (and imports) while
    the block goes on; `ready` waits for that."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=context)
        self._started: Future[dict[str, Any]] | None = None

    def ready(self) -> None:
        assert self._started is not None
        self._started.result()

    def run(self, spec: FloodSpec) -> dict[str, Any]:
        return self._pool.submit(run_flood_load, spec).result()

    def __enter__(self) -> "Flooder":
        self._started = self._pool.submit(imported)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


# ------------------------------------------------------------------ the phase (main process)


def start_session(port: int) -> tuple[str, str]:
    """The owner's session, started from this process (127.0.0.1 too): its id and token."""
    connection = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        connection.request(
            "POST", START_PATH, body=TURN_BODY, headers={"Content-Type": "application/json"}
        )
        response = connection.getresponse()
        reply = decode_wire(response.read())
    finally:
        connection.close()
    if response.status != 200 or not reply.session_id or not reply.continuation_token:
        raise RuntimeError(f"the flood's session did not start: {response.status} {reply.reason}")
    return reply.session_id, reply.continuation_token


async def _count_refusals(database_url: str) -> int:
    engine = create_async_engine(database_url)
    query = select(func.count()).select_from(events).where(events.c.kind == EventKind.REFUSED)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())
    finally:
        await engine.dispose()


def count_refusals(database_url: str) -> int:
    """The `refused` events stored, all sessions and none."""
    return asyncio.run(_count_refusals(database_url))


def refusal_limit_env() -> dict[str, str]:
    return {
        "BATON_REFUSAL_LIMIT": str(FLOOD_REFUSAL_LIMIT),
        "BATON_REFUSAL_WINDOW": str(FLOOD_REFUSAL_WINDOW),
        "BATON_REFUSAL_PACE": str(FLOOD_REFUSAL_PACE),
    }


def run_flood(
    backend: str,
    database_url: str,
    loadgen: LoadGenerator,
    config: RunConfig,
    log_dir: Path,
    work_dir: Path,
) -> Row:
    progress(
        f"flood on {backend}: {config.flood_requests} junk continues from "
        f"{FLOOD_CONCURRENCY} connections (429s paced at {FLOOD_REFUSAL_PACE:g}/s) while the "
        "owner runs c1 turns ..."
    )
    label = f"baton-{backend}-flood"
    # Both processes import this module while the server starts.
    owner_imported = loadgen.submit(imported, None)
    with (
        Flooder() as flooder,
        baton_server(database_url, log_dir, label, refusal_limit_env()) as server,
    ):
        owner_imported.result()
        flooder.ready()
        session_id, token = start_session(server.port)
        stored_before = count_refusals(database_url)
        stop = work_dir / f"flood-{backend}-{secrets.token_hex(4)}.stop"  # this flood's own
        window_start = clock() + START_MARGIN_SECONDS + config.warmup_seconds
        flood_at = window_start + config.measure_seconds
        owner = OwnerSpec(
            server.port, session_id, token, str(stop), flood_at + FLOOD_TIMEOUT_SECONDS
        )
        owned = loadgen.submit(run_owner, owner)
        flood = FloodSpec(
            server.port, session_id, config.flood_requests, FLOOD_CONCURRENCY, flood_at
        )
        try:
            flooded = flooder.run(flood)
        finally:
            stop.touch()  # the owner stops at its next turn
        owner_result = owned.result(timeout=FLOOD_TIMEOUT_SECONDS)
        stop.unlink()
        stored_after = count_refusals(database_url)
    row = flood_row(
        backend,
        owner_result,
        flooded,
        window_start=window_start,
        requests=config.flood_requests,
        stored=stored_after - stored_before,
    )
    progress(
        f"  owner p50 {row.extra['unflooded_p50_ms'] or 0:.2f} ms alone, "
        f"{row.p50_ms or 0:.2f} ms flooded; refusals stored {row.extra['refusals_stored']}"
    )
    return row


def _by_status(answers: dict[str, int]) -> dict[str, int]:
    statuses: Counter[str] = Counter()
    for answer, count in answers.items():
        statuses[answer.split(" ", 1)[0]] += count
    return counts(statuses)


def flood_row(
    backend: str,
    owner: dict[str, Any],
    flood: dict[str, Any],
    *,
    window_start: float,
    requests: int,
    stored: int,
) -> Row:
    """The owner's turns alone (began in the window, ended before the flood) and flooded
    (began while the flood ran), the flood's answers, and the refusals it left stored."""
    started, ended, seconds = flood["started"], flood["ended"], flood["seconds"]
    alone = [
        end - begin for begin, end in owner["turns"] if begin >= window_start and end <= started
    ]
    flooded = [end - begin for begin, end in owner["turns"] if started <= begin < ended]
    unflooded = summarize_latency(alone)
    answered = sum(flood["answers"].values())
    statuses = ", ".join(
        f"{status} x{count}" for status, count in _by_status(flood["answers"]).items()
    )
    row = Row(
        name=rows.FLOOD,
        backend=backend,
        concurrency=1,  # the owner's; the flood's is in extra
        rate=len(flooded) / seconds if seconds > 0 else 0.0,
        unit="turns/s",
        p50_ms=percentile_ms(flooded, 50),
        p99_ms=percentile_ms(flooded, 99),
        refusals=owner["refusals"],
        errors=owner["errors"],
        loadgen_cpu=flood["cpu"],  # the flooder's process: the load
        count=len(flooded),
        extra={
            "unflooded_p50_ms": unflooded["p50_ms"],
            "unflooded_p99_ms": unflooded["p99_ms"],
            "unflooded_count": len(alone),
            "owner_cpu": owner["cpu"],
            "flood_requests": requests,
            "flood_answered": answered,
            "flood_concurrency": FLOOD_CONCURRENCY,
            "flood_source": FLOOD_SOURCE,
            "flood_seconds": seconds,
            "flood_answers": flood["answers"],
            "flood_errors": flood["errors"],
            "refusal_limit": FLOOD_REFUSAL_LIMIT,
            "refusal_window_seconds": FLOOD_REFUSAL_WINDOW,
            "refusal_pace": FLOOD_REFUSAL_PACE,
            "refusals_stored": stored,
        },
    )
    row.notes += [
        f"owner alone: p50 {unflooded['p50_ms'] or 0:.2f} ms over {len(alone)} turns",
        f"flood: {answered} of {requests} junk continues answered in {seconds:.1f} s from "
        f"{FLOOD_CONCURRENCY} connections ({statuses}; loadgen CPU is the flooder's)",
        f"refusals stored {stored} (limit {FLOOD_REFUSAL_LIMIT} per {FLOOD_REFUSAL_WINDOW:g} s; "
        f"429s paced at {FLOOD_REFUSAL_PACE:g}/s)",
    ]
    if flood["errors"]:
        row.notes.append(f"flood errors {flood['errors']}")
    return row
