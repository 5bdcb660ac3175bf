"""Claims and commits of several sessions in one statement each (infra/postgres_batch_sql.py).

The parameters and the answers are those of the one-session paths (infra/postgres_fast.py):
each write in the batch is answered as it would be alone, None where its condition did not
hold (the store then lets the domain decide why, as it does for a write alone). A unique key
or a deadlock fails the whole statement, and nothing of it lands: SendAlone, so that each
write is tried again alone, where the store knows what such a failure means.
"""

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import asyncpg

from baton.domain.commands import ClaimTurn, CommitTurn
from baton.domain.decisions import ClaimGranted
from baton.domain.events import TurnCommitted
from baton.infra import postgres_batch_sql as sql
from baton.infra.batcher import SendAlone
from baton.infra.postgres_fast import claim_args, commit_args, granted

# What fails a batch as a whole though each of its writes might land alone.
_ALONE = (
    asyncpg.UniqueViolationError,  # one write's version or token was taken
    asyncpg.DeadlockDetectedError,  # two batches locking sessions in another order
    asyncpg.CardinalityViolationError,  # two seals under one lookup in one statement
)


async def batch_claim(
    conn: asyncpg.Connection, commands: Sequence[ClaimTurn]
) -> list[ClaimGranted | None]:
    drafts, rows = zip(*(claim_args(command) for command in commands), strict=True)
    fixed = [rows[0][index] for index in sql.CLAIM_FIXED_ARGS]
    records = await _fetch(conn, sql.BATCH_CLAIM, _arrays(rows, sql.CLAIM_ROW_ARGS), fixed)
    answers: list[ClaimGranted | None] = [None] * len(commands)
    for record in records:
        index = record["n"] - 1
        answers[index] = granted(drafts[index], record)
    return answers


async def batch_commit(
    conn: asyncpg.Connection, commands: Sequence[CommitTurn]
) -> list[TurnCommitted | None]:
    drafts, rows = zip(*(commit_args(command) for command in commands), strict=True)
    fixed = [rows[0][index] for index in sql.COMMIT_FIXED_ARGS]
    records = await _fetch(conn, sql.BATCH_COMMIT, _arrays(rows, sql.COMMIT_ROW_ARGS), fixed)
    answers: list[TurnCommitted | None] = [None] * len(commands)
    for record in records:
        index = record["n"] - 1
        answers[index] = replace(drafts[index], seq=record["seq"])
    return answers


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
