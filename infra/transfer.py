"""Moving sessions between databases (SQLite and PostgreSQL, either way) as JSON lines.

An export is one header line, then every event of each session in chain order (its events
by seq, then its refusals), with their hashes. An import checks every chain of the whole
file before it writes anything, refuses a file that does not hold together, naming the
line, and writes all of it in one transaction; the projection is folded from the imported
events, so the sessions continue with their current tokens. Global positions are not
carried: the target gives the events positions of its own, and the chains do not cover them.
"""

import json
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from infra.audit import check_chains
from infra.chain import Folded, fold_session, in_chain_order, time_text
from infra.database import writing
from infra.tables import events, sessions, side_chains

FORMAT = "baton-export"
VERSION = 1
BATCH = 1000
_FIELDS = ("seq", "refusal_seq", "kind", "turn", "consumed", "issued", "data", "hash")


class ImportRefused(ValueError):
    """The file cannot be imported; the message names the line and says why."""


def _line(row: Any) -> str:
    record = {
        "sessionId": str(row["session_id"]),
        **{_camel(field): row[field] for field in _FIELDS},
        "recordedAt": time_text(row["recorded_at"]),
    }
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)


def _camel(field: str) -> str:
    head, *rest = field.split("_")
    return head + "".join(part.title() for part in rest)


async def export_sessions(
    engine: AsyncEngine, out: TextIO, session_ids: Sequence[str] | None = None
) -> int:
    """Write the sessions (all when None) to `out`; returns how many events were written."""
    query = in_chain_order(select(events))
    if session_ids is not None:
        query = query.where(events.c.session_id.in_(session_ids))
    header = {"format": FORMAT, "version": VERSION, "sessions": session_ids}
    out.write(json.dumps(header) + "\n")
    written = 0
    async with engine.connect() as conn:
        async for row in await conn.stream(query.execution_options(yield_per=BATCH)):
            out.write(_line(row._mapping) + "\n")
            written += 1
    return written


@dataclass(frozen=True, slots=True)
class _Parsed:
    number: int  # line number in the file, from 1
    row: dict[str, Any]


def _parse(lines: Iterable[str]) -> Iterator[_Parsed]:
    numbered = enumerate(lines, start=1)
    header = next(numbered, None)
    if header is None:
        raise ImportRefused("the file is empty")
    try:
        head = json.loads(header[1])
    except json.JSONDecodeError as error:
        raise ImportRefused(f"line 1: not JSON ({error.msg})") from None
    if not isinstance(head, dict) or head.get("format") != FORMAT or head.get("version") != VERSION:
        raise ImportRefused(f"line 1: not a {FORMAT} file, version {VERSION}")
    for number, text in numbered:
        if text.strip():
            yield _Parsed(number, _row(number, text))


def _row(number: int, text: str) -> dict[str, Any]:
    try:
        record = json.loads(text)
        row = {field: record[_camel(field)] for field in _FIELDS}
        row["session_id"] = str(record["sessionId"])
        row["recorded_at"] = datetime.fromisoformat(record["recordedAt"].replace("Z", "+00:00"))
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as error:
        raise ImportRefused(f"line {number}: not an event line ({error})") from None
    return row


def _sessions(parsed: Iterable[_Parsed]) -> Iterator[list[_Parsed]]:
    """The file's lines, one session at a time; a session must not come back later."""
    seen: set[str] = set()
    group: list[_Parsed] = []
    for line in parsed:
        session_id = line.row["session_id"]
        if group and group[0].row["session_id"] != session_id:
            yield group
            group = []
        if not group:
            if session_id in seen:
                raise ImportRefused(f"line {line.number}: session {session_id} appears twice")
            seen.add(session_id)
        group.append(line)
    if group:
        yield group


def _fold(group: list[_Parsed]) -> Folded:
    """The projection a session's events make, chain heads included."""
    folded = fold_session(line.row for line in group)
    if folded is None:
        raise ImportRefused(f"line {group[0].number}: a session with refusals but no events")
    return folded


def check_file(lines: Iterable[str]) -> Iterator[tuple[list[_Parsed], Folded]]:
    """Each session of the file with its projection, once its chains are checked (first:
    a tampered payload must be refused for what it is, not fail to decode)."""
    for group in _sessions(_parse(lines)):
        # The line number stands in for the position, so a broken link names its line.
        chain, refusals = check_chains([line.row | {"position": line.number} for line in group])
        broken = chain.broken or refusals.broken
        if broken is not None:
            number = broken.position or group[-1].number
            raise ImportRefused(f"line {number}: {broken.problem} ({broken.where})")
        yield group, _fold(group)


Reader = Callable[[], AbstractContextManager[Iterable[str]]]
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
            async for rows, folded in _batches(check_file(second_pass)):
                await conn.execute(insert(events), rows)
                await conn.execute(insert(sessions), [session.row() for session in folded])
                sides = [side for session in folded if (side := session.side_row()) is not None]
                if sides:
                    await conn.execute(insert(side_chains), sides)
                imported += len(rows)
    return len(session_ids), imported


async def _existing(conn: Any, session_ids: list[str]) -> list[str]:
    found: list[str] = []
    for start in range(0, len(session_ids), BATCH):
        chunk = session_ids[start : start + BATCH]
        query = select(sessions.c.session_id).where(sessions.c.session_id.in_(chunk))
        found += [str(value) for value in (await conn.execute(query)).scalars()]
    return found


async def _batches(
    checked: Iterator[tuple[list[_Parsed], Folded]],
) -> AsyncIterator[tuple[list[dict[str, Any]], list[Folded]]]:
    rows: list[dict[str, Any]] = []
    projections: list[Folded] = []
    for group, projection in checked:
        rows += [line.row for line in group]
        projections.append(projection)
        if len(rows) >= BATCH:
            yield rows, projections
            rows, projections = [], []
    if rows:
        yield rows, projections
