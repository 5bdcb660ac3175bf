"""Claims, commits and facts without a seq of several sessions in one statement each
(infra/postgres_batch_sql.py).

The parameters and the answers are those of the one-session paths (infra/postgres_fast.py):
each write in the batch is answered as it would be alone, except that a claim that did not
land comes back with what it found (the session and the seal) where one alone comes back
None; the store then lets the domain decide why, on that or on a read. A unique key or a
deadlock fails the whole statement, and nothing of it lands: SendAlone, so that each write
is tried again alone, where the store knows what such a failure means.
"""

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, TypeVar

import asyncpg

from baton.domain.commands import ClaimTurn, CommitTurn
from baton.domain.decisions import ClaimGranted
from baton.domain.events import TurnClaimed, TurnCommitted
from baton.domain.values import value
from baton.infra import postgres_batch_sql as sql
from baton.infra.batcher import SendAlone
from baton.infra.planning import Loaded
from baton.infra.postgres_fast import claim_args, commit_args, granted
from baton.infra.postgres_writes import SideAnswer, SideFact, loaded_with_seal, side_args

D = TypeVar("D")  # an event as drafted before the row gives it its seq

# What fails a batch as a whole though each of its writes might land alone.
_ALONE = (
    asyncpg.UniqueViolationError,  # one write's version or token was taken
    asyncpg.DeadlockDetectedError,  # two batches locking sessions in another order
    asyncpg.CardinalityViolationError,  # two seals under one lookup in one statement
)


async def batch_claim(
    conn: asyncpg.Connection, commands: Sequence[ClaimTurn]
) -> list[ClaimGranted | Loaded | None]:
    built = [_or_found(command) for command in commands]
    drafts, records = await _send(conn, built, sql.BATCH_CLAIM, CLAIMS)
    answers: list[ClaimGranted | Loaded | None] = [None] * len(commands)
    for index, record in records:
        # The claim as it landed, or what it found instead (BATCH_CLAIM's two branches).
        answers[index] = (
            granted(drafts[index], record) if record["won"] else loaded_with_seal(record)
        )
    return answers


async def batch_commit(
    conn: asyncpg.Connection, commands: Sequence[CommitTurn]
) -> list[TurnCommitted | None]:
    drafts, records = await _send(
        conn, [commit_args(command) for command in commands], sql.BATCH_COMMIT, COMMITS
    )
    answers: list[TurnCommitted | None] = [None] * len(commands)
    for index, record in records:
        answers[index] = replace(drafts[index], seq=record["seq"])
    return answers


async def batch_side(conn: asyncpg.Connection, facts: Sequence[SideFact]) -> list[SideAnswer]:
    """Refusals and recoveries of several sessions, each linked into its session's side
    chain (or not, if the session is not there), and each replay's turn events."""
    _, records = await _send(
        conn, [(None, side_args(fact)) for fact in facts], sql.BATCH_SIDE, SIDES
    )
    linked = [False] * len(facts)
    rows: list[list[asyncpg.Record]] = [[] for _ in facts]
    for index, record in records:
        linked[index] = record["linked"]
        if record["position"] is not None:
            rows[index].append(record)
    return list(zip(linked, rows, strict=True))


def _or_found(command: ClaimTurn) -> tuple[TurnClaimed, tuple[Any, ...]]:
    """A batched claim's parameters: CLAIM's, and the lookup of the seal to read back if the
    claim does not land. A batch reads back for every claim, keyed or not: its one extra
    branch, shared by the batch, costs less than a read of its own for each refusal."""
    draft, args = claim_args(command)
    return draft, (*args, command.seal_lookup)


@value
class _Layout:
    """Which of the one-session statement's parameters become arrays, and which stay one
    value for the whole batch (the same for every write)."""

    rows: tuple[int, ...]
    fixed: tuple[int, ...]


CLAIMS = _Layout(sql.CLAIM_ROW_ARGS, sql.CLAIM_FIXED_ARGS)
COMMITS = _Layout(sql.COMMIT_ROW_ARGS, sql.COMMIT_FIXED_ARGS)
SIDES = _Layout(sql.SIDE_ROW_ARGS, sql.SIDE_FIXED_ARGS)


async def _send(
    conn: asyncpg.Connection,
    built: list[tuple[D, tuple[Any, ...]]],
    query: str,
    layout: _Layout,
) -> tuple[list[D], list[tuple[int, asyncpg.Record]]]:
    """The drafts, and each row the statement returned with the index of its write."""
    drafts = [draft for draft, _ in built]
    rows = [args for _, args in built]
    fixed = [rows[0][index] for index in layout.fixed]
    records = await _fetch(conn, query, _arrays(rows, layout.rows), fixed)
    return drafts, [(record["n"] - 1, record) for record in records]


def _arrays(rows: Sequence[tuple[Any, ...]], indexes: tuple[int, ...]) -> list[list[Any]]:
    """One array per parameter that differs between writes, in the batch's order."""
    return [[row[index] for row in rows] for index in indexes]


async def _fetch(
    conn: asyncpg.Connection, query: str, arrays: list[list[Any]], fixed: list[Any]
) -> list[asyncpg.Record]:
    try:
        records: list[asyncpg.Record] = await conn.fetch(query, *arrays, *fixed)
    except _ALONE as error:
        raise SendAlone(str(error)) from error
    return records
