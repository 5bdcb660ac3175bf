"""Moving sessions between databases (SQLite and PostgreSQL, either way) as JSON lines.

An export (infra/export_format.py) is a header line, then every event of each session in
chain order (its events by seq, then its refusals), with their hashes, then an end line.
An import checks the whole file before it writes anything and refuses a file that does not
hold together, naming the line: its lines and their fields (infra/import_lines.py), every
hash chain (infra/audit.py), then what the events mean (infra/import_checks.py); then,
inside the one transaction that writes all of it, that neither its sessions nor its tokens
are in the target already. The projection is folded from the imported events, so the
sessions continue with their current tokens. Global positions are not carried: the target
gives the events positions of its own, and the chains do not cover them.
"""

from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, TextIO

from sqlalchemy import insert, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from baton.infra.audit import check_chains
from baton.infra.chain import Folded, in_chain_order
from baton.infra.database import writing
from baton.infra.export_format import ExportWriter, ImportRefused
from baton.infra.import_checks import check_session
from baton.infra.import_lines import Parsed, parse, refuse
from baton.infra.tables import events, sessions, side_chains

BATCH = 1000

__all__ = ["ImportRefused", "Reader", "export_sessions", "import_sessions"]


async def export_sessions(
    engine: AsyncEngine, out: TextIO, session_ids: Sequence[str] | None = None
) -> int:
    """Write the sessions (all when None) to `out`; returns how many events were written."""
    query = in_chain_order(select(events))
    if session_ids is not None:
        query = query.where(events.c.session_id.in_(session_ids))
    writer = ExportWriter(out, session_ids)
    async with engine.connect() as conn:
        async for row in await conn.stream(query.execution_options(yield_per=BATCH)):
            writer.write(row._mapping)
    writer.end()
    return writer.events


def _sessions(parsed: Iterable[Parsed]) -> Iterator[list[Parsed]]:
    """The file's lines, one session at a time; a session must not come back later."""
    seen: set[str] = set()
    group: list[Parsed] = []
    for line in parsed:
        session_id = line.row["session_id"]
        if group and group[0].row["session_id"] != session_id:
            yield group
            group = []
        if not group:
            if session_id in seen:
                refuse(line.number, f"session {session_id} appears twice")
            seen.add(session_id)
        group.append(line)
    if group:
        yield group


def _check_chains(group: list[Parsed]) -> None:
    # The line number stands in for the position, so a broken link names its line.
    chain, refusals = check_chains([line.row | {"position": line.number} for line in group])
    broken = chain.broken or refusals.broken
    if broken is not None:
        refuse(broken.position or group[-1].number, f"{broken.problem} ({broken.where})")


def check_file(lines: Iterable[str | bytes]) -> Iterator[tuple[list[Parsed], Folded]]:
    """Each session of the file with its projection, once its chains are checked (first:
    a tampered payload must be refused for what it is, not fail to decode) and then what
    its events mean."""
    issued: dict[str, int] = {}
    for group in _sessions(parse(lines)):
        _check_chains(group)
        yield group, check_session(group, issued)


Reader = Callable[[], AbstractContextManager[Iterable[str | bytes]]]
"""Opens the export's lines afresh (a file, for the CLI); an import reads them twice."""


async def import_sessions(engine: AsyncEngine, read: Reader) -> tuple[int, int]:
    """Import an export: (sessions, events). Checks the whole file before writing a row."""
    with read() as first_pass:
        session_ids = [group[0].row["session_id"] for group, _ in check_file(first_pass)]
    if not session_ids:
        return 0, 0
    async with writing(engine).begin() as conn:
        taken = await _existing(conn, session_ids)
        if taken:
            raise ImportRefused(f"session {taken[0]} is already in this database")
        imported = 0
        with read() as second_pass:
            async for lines, folded in _batches(check_file(second_pass)):
                await _refuse_known_tokens(conn, lines)
                await _write(conn, [line.row for line in lines], folded)
                imported += len(lines)
    return len(session_ids), imported


async def _write(conn: AsyncConnection, rows: list[dict[str, Any]], folded: list[Folded]) -> None:
    await conn.execute(insert(events), rows)
    await conn.execute(insert(sessions), [session.row() for session in folded])
    sides = [side for session in folded if (side := session.side_row()) is not None]
    if sides:
        await conn.execute(insert(side_chains), sides)


async def _existing(conn: AsyncConnection, session_ids: list[str]) -> list[str]:
    found: list[str] = []
    for start in range(0, len(session_ids), BATCH):
        chunk = session_ids[start : start + BATCH]
        query = select(sessions.c.session_id).where(sessions.c.session_id.in_(chunk))
        found += [str(value) for value in (await conn.execute(query)).scalars()]
    return found


async def _refuse_known_tokens(conn: AsyncConnection, lines: list[Parsed]) -> None:
    """A token is spent once and issued once, ever: one the target has seen already (in
    any session) would make a second life for it there."""
    tokens: dict[str, int] = {}
    for line in lines:
        for token in (line.row["consumed"], line.row["issued"]):
            if token is not None:
                tokens.setdefault(token, line.number)
    seen = sorted(tokens, key=tokens.__getitem__)
    for start in range(0, len(seen), BATCH // 2):
        chunk = seen[start : start + BATCH // 2]
        query = select(events.c.consumed, events.c.issued).where(
            or_(events.c.consumed.in_(chunk), events.c.issued.in_(chunk))
        )
        known = [token for row in await conn.execute(query) for token in row if token in tokens]
        if known:
            refuse(min(tokens[token] for token in known), "its token is in this database already")


async def _batches(
    checked: Iterator[tuple[list[Parsed], Folded]],
) -> AsyncIterator[tuple[list[Parsed], list[Folded]]]:
    lines: list[Parsed] = []
    projections: list[Folded] = []
    for group, projection in checked:
        lines += group
        projections.append(projection)
        if len(lines) >= BATCH:
            yield lines, projections
            lines, projections = [], []
    if lines:
        yield lines, projections
