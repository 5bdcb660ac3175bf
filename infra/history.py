"""The read side: a session's stored history, the session list, and a global feed of every
event that a consumer can follow with a cursor and never miss a row.

`SessionReader` is what the API and the CLI read through; each backend implements it on
the connections its store already has (infra/sqlite_reader.py, infra/postgres_reader.py),
and raises the domain's StoreUnavailable, never a driver's error, when the database cannot
be reached. Nothing here writes. The SQL is written once (`?` placeholders, turned into
`$n` for PostgreSQL) and only the feed's ordering differs between the backends.
"""

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from baton.domain.events import EventKind
from baton.domain.history import ATTEMPT_ENDS, void_records
from baton.domain.identifiers import parse_session_id
from baton.domain.json import JsonValue
from baton.domain.state import SessionStatus
from baton.domain.values import value

BIGINT_MAX = 2**63 - 1
MAX_PAGE = 500


class InvalidCursor(ValueError):
    """A cursor this database never handed out (malformed, or another backend's)."""


@value(kw_only=True)
class StoredEvent:
    """One row of the event table, exactly as stored (every column but the txid, an
    ordering key internal to the feed)."""

    position: int
    session_id: str | None
    seq: int | None
    refusal_seq: int | None
    kind: str
    turn: int | None
    consumed: str | None
    issued: str | None
    data: JsonValue
    recorded_at: datetime
    hash: str | None


@value(kw_only=True)
class HistoryEvent(StoredEvent):
    """A session's event, and whether it is a record its turn never kept."""

    void: bool


@value(kw_only=True)
class SessionSummary:
    session_id: str
    status: str
    version: int
    turn: int
    created_at: datetime
    updated_at: datetime
    refusals: int
    last_outcome: JsonValue
    owner: str | None  # the principal that started it (domain/principals.py)


@value(kw_only=True)
class SessionFilter:
    """Which sessions a page lists: `created_after` inclusive, `created_before` not, so
    adjacent ranges tile; `after` is the last id of the previous page."""

    status: SessionStatus | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    after: str | None = None
    limit: int = 50


class SessionReader(Protocol):
    async def session_events(self, session_id: str) -> list[HistoryEvent] | None:
        """Every stored event of a session, its refusals included, in position order; None
        if there is no such session (a malformed id included)."""
        ...

    async def history_page(
        self, session_id: str, after: int | None, limit: int
    ) -> tuple[list[HistoryEvent], str | None] | None:
        """Up to `limit` of a session's events after position `after` (None: from its
        first), in position order, each marked void or not as the whole history would mark
        it, and the cursor of the next page (None: this was the last); None if there is no
        such session."""
        ...

    async def list_sessions(self, query: SessionFilter) -> tuple[list[SessionSummary], str | None]:
        """One page of sessions in id order (UUIDv7: creation order), and the cursor of the
        next page, or None if this is the last."""
        ...

    async def feed(self, after: str | None, limit: int) -> tuple[list[StoredEvent], str | None]:
        """Up to `limit` events after the cursor `after` (None: from the beginning), and the
        cursor to pass next time (`after` itself when there was nothing new). See
        infra/postgres_reader.py for why the feed never skips a row that commits late."""
        ...

    async def count_sessions(self) -> int: ...

    async def schema_revision(self) -> str | None:
        """The migration revision the database is at; None if it was never migrated."""
        ...


EVENT_COLUMNS = tuple(StoredEvent.__dataclass_fields__)
_EVENT_SELECT = ", ".join(EVENT_COLUMNS)
SUMMARY_COLUMNS = tuple(SessionSummary.__dataclass_fields__)
# The refusal count lives in the session's side chain row, absent until its first refusal.
_SUMMARY_SELECT = ", ".join(
    "coalesce(c.refusals, 0) AS refusals" if name == "refusals" else f"s.{name}"
    for name in SUMMARY_COLUMNS
)

SESSION_EVENTS = f"SELECT {_EVENT_SELECT} FROM events WHERE session_id = ? ORDER BY position"  # noqa: S608
HISTORY_PAGE = (
    f"SELECT {_EVENT_SELECT} FROM events "  # noqa: S608 - fixed column names
    "WHERE session_id = ? AND position > ? ORDER BY position LIMIT ?"
)
# The first end of a turn attempt after a seq: the fate of the records a page leaves open.
ATTEMPT_END = (
    f"SELECT {_EVENT_SELECT} FROM events WHERE session_id = ? AND seq > ? "  # noqa: S608
    f"AND kind IN ({', '.join(repr(kind.value) for kind in sorted(ATTEMPT_ENDS))}) "
    "ORDER BY seq LIMIT 1"
)
SESSION_EXISTS = "SELECT 1 FROM sessions WHERE session_id = ?"
COUNT_SESSIONS = "SELECT count(*) FROM sessions"
REVISION = "SELECT version_num FROM alembic_version"


def stored_event(row: Mapping[str, Any]) -> StoredEvent:
    return StoredEvent(**{name: row[name] for name in EVENT_COLUMNS})


def with_void(rows: Iterable[Mapping[str, Any]]) -> list[HistoryEvent]:
    """A session's rows as history, each marked void or not (domain/history.py decides)."""
    rows = list(rows)
    void = {event.position for event in void_records(stored_event(row) for row in rows)}
    return [
        HistoryEvent(**{name: row[name] for name in EVENT_COLUMNS}, void=row["position"] in void)
        for row in rows
    ]


def attempt_end_after(rows: Sequence[Mapping[str, Any]]) -> int | None:
    """Where to look for the fate of a page's records: its last seq, if it holds a record
    (whose attempt may end on a later page); None if it holds none."""
    if not any(row["kind"] == EventKind.RECORD for row in rows):
        return None
    return max(int(row["seq"]) for row in rows if row["seq"] is not None)


def history_page(
    rows: Sequence[Mapping[str, Any]], attempt_end: Mapping[str, Any] | None, limit: int
) -> tuple[list[HistoryEvent], str | None]:
    """A page of a session's rows as history: void by the rule of domain/history.py, judged
    with the end of the attempt the page stops in, and the next page's cursor."""
    judged = with_void([*rows, *([attempt_end] if attempt_end is not None else [])])
    page = judged[: len(rows)]
    return page, str(page[-1].position) if len(page) == limit else None


def session_id_cursor(after: str) -> str:
    parsed = parse_session_id(after)
    if parsed is None:
        raise InvalidCursor("not a session id")
    return parsed


def sessions_query(query: SessionFilter) -> tuple[str, list[tuple[str, Any]]]:
    """The session list's SQL (one row more than the page tells whether another follows)
    and its parameters, each tagged with its kind ("id", "time" or "value") so a backend
    can lay it out as its column stores it."""
    where: list[str] = []
    params: list[tuple[str, Any]] = []
    if query.status is not None:
        where.append("s.status = ?")
        params.append(("value", query.status.value))
    if query.created_after is not None:
        where.append("s.created_at >= ?")
        params.append(("time", query.created_after))
    if query.created_before is not None:
        where.append("s.created_at < ?")
        params.append(("time", query.created_before))
    if query.after is not None:
        where.append("s.session_id > ?")
        params.append(("id", session_id_cursor(query.after)))
    condition = f"WHERE {' AND '.join(where)} " if where else ""
    params.append(("value", query.limit + 1))
    sql = (
        f"SELECT {_SUMMARY_SELECT} FROM sessions AS s "  # noqa: S608 - fixed column names
        f"LEFT JOIN side_chains AS c ON c.session_id = s.session_id {condition}"
        "ORDER BY s.session_id LIMIT ?"
    )
    return sql, params


def page_of(
    rows: Sequence[Mapping[str, Any]], limit: int
) -> tuple[list[SessionSummary], str | None]:
    page = [SessionSummary(**{name: row[name] for name in SUMMARY_COLUMNS}) for row in rows]
    return page[:limit], page[limit - 1].session_id if len(page) > limit else None


def numbered(sql: str) -> str:
    """`?` placeholders as PostgreSQL's `$1`, `$2`, ... (the SQL here has no `?` in text)."""
    count = iter(range(1, sql.count("?") + 1))
    return re.sub(r"\?", lambda _: f"${next(count)}", sql)


def bigint(text: str) -> int:
    value = int(text)
    if value > BIGINT_MAX:
        raise InvalidCursor("out of range")
    return value
