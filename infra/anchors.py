"""Anchors: every session's chain heads, kept outside the database, to check it against.

A hash chain catches an edited, deleted or swapped event, not a consistent rewrite: whoever
edits an early event and recomputes every later hash, and the projection's heads, leaves
chains that verify. What they cannot do is make the rewritten chain pass through a head
that was written down elsewhere before. So:

- `write_anchor` writes each session's heads as the projection holds them (one statement,
  so one consistent snapshot even on a live database) into an anchor file
  (infra/anchor_file.py), with a digest over all of them and the time;
- `check_against` recomputes each anchored session's chains from its events' own fields,
  trusting no stored hash, and requires them to pass through the anchored head at the
  anchored seq, and through the anchored side-chain head at the anchored refusal place.
  Later events are fine: a chain that grew still extends the anchor.

A session the anchor names that is no longer in the database is reported as pruned, not as
tampered with, when `pruned` (infra/retention.py) records it with chains at least as long
as the anchor's (and, at the same length, the same heads); otherwise it is missing. The
`pruned` row is only as trustworthy as the database: a pruned session's events are in the
export prune wrote, whose chains end at the heads `pruned` keeps.
"""

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import datetime
from itertools import groupby
from typing import Any, TextIO

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.domain.values import value
from baton.infra.anchor_file import Anchor, AnchorWriter, Entry
from baton.infra.chain import in_chain_order, link, row_payload, time_text
from baton.infra.tables import events, pruned, sessions, sessions_with_side_chains

BATCH = 200  # anchored sessions checked per query


@value
class Finding:
    session_id: str
    where: str  # "seq 5", "refusal 2", "session"
    problem: str
    pruned: bool = False  # not a problem: pruned since the anchor, as `pruned` records

    def __str__(self) -> str:
        return f"session {self.session_id}: {self.where}: {self.problem}"


async def write_anchor(
    engine: AsyncEngine, out: TextIO, at: datetime, session_ids: Sequence[str] | None = None
) -> tuple[int, str]:
    """Write the anchor of the sessions (all when None) to `out`, as of `at`: (sessions,
    digest)."""
    query = sessions_with_side_chains().order_by(sessions.c.session_id)
    if session_ids is not None:
        query = query.where(sessions.c.session_id.in_(session_ids))
    writer = AnchorWriter(out, time_text(at))
    async with engine.connect() as conn:
        async for row in await conn.stream(query.execution_options(yield_per=1000)):
            writer.add(_entry(row._mapping))
    return writer.count, writer.end()


def _entry(row: Mapping[Any, Any]) -> Entry:
    refusals = row["refusals"] or 0
    head = row["refusal_head"] if refusals else None
    return Entry(str(row["session_id"]), row["version"], row["head_hash"], refusals, head)


async def check_against(engine: AsyncEngine, anchor: Anchor) -> AsyncIterator[Finding]:
    """What the database says about each anchored session: every chain that no longer
    passes through its anchored head, every session missing, and every session pruned
    since (marked `pruned`)."""
    entries = anchor.entries
    for start in range(0, len(entries), BATCH):
        for finding in await _check_batch(engine, entries[start : start + BATCH]):
            yield finding


async def _check_batch(engine: AsyncEngine, batch: Sequence[Entry]) -> list[Finding]:
    ids = [entry.session_id for entry in batch]
    query = in_chain_order(select(events)).where(events.c.session_id.in_(ids))
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
        grouped = {key: list(group) for key, group in groupby(rows, lambda r: str(r["session_id"]))}
        gone = [session_id for session_id in ids if session_id not in grouped]
        tombstones = select(pruned).where(pruned.c.session_id.in_(gone))
        records = {
            str(row["session_id"]): row for row in (await conn.execute(tombstones)).mappings()
        }
    findings = []
    for entry in batch:
        rows_of = grouped.get(entry.session_id)
        found = _extends(entry, rows_of) if rows_of else _gone(entry, records.get(entry.session_id))
        findings += found
    return findings


def _extends(entry: Entry, rows: list[Mapping[Any, Any]]) -> list[Finding]:
    """Whether the session's two chains, recomputed, pass through the anchored heads."""
    found = []
    seq_rows = [row for row in rows if row["seq"] is not None]
    problem = _passes(seq_rows, "seq", entry.seq, entry.head)
    if problem is not None:
        found.append(Finding(entry.session_id, *problem))
    if entry.refusals:
        side_rows = [row for row in rows if row["seq"] is None]
        problem = _passes(side_rows, "refusal", entry.refusals, entry.refusal_head)
        if problem is not None:
            found.append(Finding(entry.session_id, *problem))
    return found


def _passes(
    rows: Iterable[Mapping[Any, Any]], chain: str, target: int, anchored: str | None
) -> tuple[str, str] | None:
    """(where, problem) if the chain recomputed from `rows` does not pass through
    `anchored` at place `target`."""
    head: str | None = None
    place = 0
    for row in rows:
        found = row["seq"] if chain == "seq" else row["refusal_seq"]
        if found != place + 1:
            break
        turn = row["turn"] if chain == "seq" else None
        head, place = link(head, found, turn, row_payload(row)), found
        if place == target:
            if head == anchored:
                return None
            return f"{chain} {target}", (
                "the chain no longer passes through the anchored head: history up to"
                f" {chain} {target} was rewritten"
            )
    return f"{chain} {place + 1}", (
        f"{chain} {place + 1} is missing: the chain stops at {place}, short of the anchored"
        f" {chain} {target}"
    )


def _gone(entry: Entry, record: Mapping[Any, Any] | None) -> list[Finding]:
    """An anchored session the database no longer holds: pruned, or missing."""
    session_id = entry.session_id
    if record is None:
        return [Finding(session_id, "session", "missing: no events, and no prune recorded")]
    shorter = record["version"] < entry.seq or record["refusals"] < entry.refusals
    other_head = record["version"] == entry.seq and record["head_hash"] != entry.head
    other_refusal = (
        entry.refusals
        and record["refusals"] == entry.refusals
        and record["refusal_head"] != entry.refusal_head
    )
    if shorter or other_head or other_refusal:
        problem = (
            f"recorded as pruned with chains (seq {record['version']}, {record['refusals']}"
            " refusals) that do not extend the anchor's"
        )
        return [Finding(session_id, "session", problem)]
    when = record["pruned_at"].strftime("%Y-%m-%dT%H:%M:%SZ")
    note = f"pruned since the anchor (at {when}, seq {record['version']})"
    return [Finding(session_id, "session", note, pruned=True)]
