"""Verifying the hash chains (see infra/chain.py) against what the tables hold.

For each session the events are read in chain order and every link is computed again;
the first event whose seq is not the next one (a deleted event) or whose stored hash is not
the computed one (an edited payload, two swapped events) is the session's broken link. The
projection's chain heads must then name the chain's last links, which also catches events
cut off the end. Events and projection rows are streamed side by side in session order, so
memory stays flat however large the table.
"""

from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.domain.values import value
from baton.infra.chain import ChainHeads, by_session, in_chain_order, link, row_payload, standalone
from baton.infra.database import snapshot
from baton.infra.tables import events, sessions, sessions_with_side_chains

BATCH = 1000


@value
class BrokenLink:
    session_id: str | None
    position: int | None  # the event's global position, when an event is to blame
    where: str  # "seq 5", "refusal 2", "projection"
    problem: str

    def __str__(self) -> str:
        event = f" (event #{self.position})" if self.position is not None else ""
        session = self.session_id or "(no session)"
        return f"session {session}: {self.where}{event}: {self.problem}"


@dataclass(slots=True)
class _ChainCheck:
    """One chain of one session, checked link by link."""

    name: str  # "seq" or "refusal"
    expected: int = 1
    head: str | None = None
    broken: BrokenLink | None = None

    def follow(self, row: Any, place: int, turn: int | None) -> None:
        if self.broken is not None:
            return
        where = f"{self.name} {self.expected}"
        session_id = str(row["session_id"])
        if place != self.expected:
            problem = (
                f"{self.name} {self.expected} is missing (deleted?); found {place} instead"
                if place > self.expected
                else f"{self.name} {place} appears again or out of order"
            )
            self.broken = BrokenLink(session_id, row["position"], where, problem)
            return
        computed = link(self.head, place, turn, row_payload(row))
        if computed != row["hash"]:
            problem = "hash does not match: the event was edited, or events were swapped"
            self.broken = BrokenLink(session_id, row["position"], where, problem)
            return
        self.head, self.expected = computed, self.expected + 1


def check_chains(rows: Iterable[Any]) -> tuple[_ChainCheck, _ChainCheck]:
    """Follow one session's events (in chain order) link by link: its two chains, checked."""
    chain, refusals = _ChainCheck("seq"), _ChainCheck("refusal")
    for row in rows:
        if row["seq"] is not None:
            chain.follow(row, row["seq"], row["turn"])
        else:
            refusals.follow(row, row["refusal_seq"] or 0, None)
    return chain, refusals


def check_session(rows: Sequence[Any], projection: Any | None) -> BrokenLink | None:
    """The first broken link of one session's events (in chain order), or None."""
    chain, refusals = check_chains(rows)
    broken = chain.broken or refusals.broken
    if broken is not None or not rows:
        return broken
    return _check_heads(str(rows[0]["session_id"]), chain, refusals, projection)


def _check_heads(
    session_id: str, chain: _ChainCheck, refusals: _ChainCheck, projection: Any | None
) -> BrokenLink | None:
    if projection is None:
        return BrokenLink(session_id, None, "projection", "events with no projection row")
    stored = ChainHeads.of(projection)
    built = ChainHeads(chain.head, refusals.expected - 1, refusals.head)
    if stored == built and projection["version"] == chain.expected - 1:
        return None
    problem = (
        f"the projection's heads (version {projection['version']}, {stored.refusals} refusals)"
        f" do not end the chains (seq {chain.expected - 1}, {built.refusals} refusals):"
        " events were cut off the end, or the projection was edited"
    )
    return BrokenLink(session_id, None, "projection", problem)


def _session_events(session_ids: Sequence[str] | None) -> Select[Any]:
    query = in_chain_order(select(events))
    if session_ids is not None:
        query = query.where(events.c.session_id.in_(session_ids))
    return query


def _projections(session_ids: Sequence[str] | None) -> Select[Any]:
    query = sessions_with_side_chains()
    if session_ids is not None:
        query = query.where(sessions.c.session_id.in_(session_ids))
    return query.order_by(sessions.c.session_id)


async def _grouped(engine: AsyncEngine, query: Select[Any]) -> AsyncIterator[list[Any]]:
    """The query's rows (ordered by session), one session's rows at a time."""
    async with engine.connect() as conn:
        async for group in by_session(conn, query, BATCH):
            yield group


async def verify(
    engine: AsyncEngine, session_ids: Sequence[str] | None = None
) -> AsyncIterator[BrokenLink]:
    """Every broken link: the first of each session whose chains do not hold.

    The events and the projection are streamed apart, so on a live database a session that
    moves between the two reads would look cut off: a session whose heads disagree is read
    again, events and row in one snapshot, and reported only if they still disagree."""
    async for broken in _streamed(engine, session_ids):
        if broken.where == "projection" and broken.session_id is not None:
            again = await _recheck(engine, broken.session_id)
            if again is None:
                continue
            broken = again
        yield broken


async def _recheck(engine: AsyncEngine, session_id: str) -> BrokenLink | None:
    async with snapshot(engine) as conn:
        rows = (await conn.execute(_session_events([session_id]))).mappings().all()
        projection = (await conn.execute(_projections([session_id]))).mappings().first()
    if rows:
        return check_session(rows, projection)
    return BrokenLink(session_id, None, "projection", "no events") if projection else None


async def _streamed(
    engine: AsyncEngine, session_ids: Sequence[str] | None
) -> AsyncIterator[BrokenLink]:
    projections = _grouped(engine, _projections(session_ids))
    pending = await anext(projections, None)
    async for group in _grouped(engine, _session_events(session_ids)):
        session_id = group[0]["session_id"]
        # Projection rows with no events at all are broken too: walk up to this session.
        while pending is not None and str(pending[0]["session_id"]) < str(session_id):
            yield BrokenLink(str(pending[0]["session_id"]), None, "projection", "no events")
            pending = await anext(projections, None)
        projection = None
        if pending is not None and pending[0]["session_id"] == session_id:
            projection, pending = pending[0], await anext(projections, None)
        broken = check_session(group, projection)
        if broken is not None:
            yield broken
    while pending is not None:
        yield BrokenLink(str(pending[0]["session_id"]), None, "projection", "no events")
        pending = await anext(projections, None)
    if session_ids is None:
        async for broken in _verify_standalone(engine):
            yield broken


async def _verify_standalone(engine: AsyncEngine) -> AsyncIterator[BrokenLink]:
    """Refusals that name no session: each hash stands alone."""
    query = select(events).where(events.c.session_id.is_(None)).order_by(events.c.position)
    async with engine.connect() as conn:
        async for row in await conn.stream(query.execution_options(yield_per=BATCH)):
            mapping = row._mapping
            if standalone(mapping) != mapping["hash"]:
                yield BrokenLink(None, mapping["position"], "refusal", "hash does not match")
