"""`baton history SESSION_ID`: a session's stored events, read from the database directly.

It needs no running server. It prints what the table holds, and the table holds only
digests of tokens, never a token. It reads a page at a time and prints each as it comes,
so a session with millions of events (a flooded one) prints in bounded memory;
`--after`/`--limit` print a part of it.
"""

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable
from datetime import UTC
from pathlib import Path
from typing import Any

import msgspec

from baton.api.admin_bodies import history_event_body, principal_in
from baton.domain.events import EventKind
from baton.infra.database import SQLITE, normalize_url
from baton.infra.history import MAX_PAGE, HistoryEvent, SessionReader
from baton.infra.settings import Settings, SettingsError
from baton.infra.stores import open_database

SUMMARY_WIDTH = 60  # characters of JSON shown for an input, a record, an output
DIGEST_SHOWN = 8  # hex characters of a token digest


def add_history_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session_id", help="the session whose events to print")
    parser.add_argument(
        "--json", action="store_true", help="print a JSON array of the events, every field"
    )
    parser.add_argument(
        "--after",
        type=_position,
        default=None,
        metavar="POSITION",
        help="only the events after this position (the first column)",
    )
    parser.add_argument(
        "--limit", type=_count, default=None, metavar="N", help="print at most N events"
    )


def _position(text: str) -> int:
    if not text.isdigit() or len(text) > 19:
        raise argparse.ArgumentTypeError("a position is a whole number (0 or more)")
    return int(text)


def _count(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) <= 10**9:
        raise argparse.ArgumentTypeError("a count is a whole number from 1")
    return int(text)


def print_history(settings: Settings, args: argparse.Namespace) -> int:
    """Exit status 0 when printed, 1 for an unknown session."""
    _require_sqlite_file(settings)
    return asyncio.run(_print(settings, args))


async def _print(settings: Settings, args: argparse.Namespace) -> int:
    printed = 0
    async with open_database(settings) as database:
        async for page in _pages(database.reader, args.session_id, args.after, args.limit):
            if page is None:
                print(f"baton: unknown session {args.session_id[:200]!r}", file=sys.stderr)
                return 1
            for event in page:
                if args.json:
                    body = msgspec.json.encode(history_event_body(event)).decode()
                    print(("[\n  " if printed == 0 else ",\n  ") + body, end="")
                else:
                    print(line_of(event))
                printed += 1
    if args.json:
        print("[]" if printed == 0 else "\n]")
    return 0


async def _pages(
    reader: SessionReader, session_id: str, after: int | None, limit: int | None
) -> AsyncIterator[list[HistoryEvent] | None]:
    """The session's history a page at a time (None: no such session), `limit` at most."""
    left = limit
    while left is None or left > 0:
        size = MAX_PAGE if left is None else min(MAX_PAGE, left)
        page = await reader.history_page(session_id, after, size)
        if page is None:
            yield None
            return
        events, cursor = page
        yield events
        if left is not None:
            left -= len(events)
        if cursor is None:
            return
        after = int(cursor)


def _require_sqlite_file(settings: Settings) -> None:
    # Connecting would create an empty file: a mistyped path should say so instead.
    url = normalize_url(settings.database_url)
    if url.get_backend_name() == SQLITE and not Path(str(url.database)).is_file():
        raise SettingsError(f"no SQLite database at {url.database}")


# --------------------------------------------------------------- one line per event


def line_of(event: HistoryEvent) -> str:
    at = event.recorded_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    turn = f"turn {event.turn}" if event.turn is not None else "-"
    principal = principal_in(event.data)
    summary = summary_of(event) + (f"  by {principal}" if principal is not None else "")
    return f"{event.position:>8}  {at}  {event.kind:<9}  {turn:<8}  {summary}".rstrip()


def abbreviated(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= SUMMARY_WIDTH else text[: SUMMARY_WIDTH - 3] + "..."


def _short(digest: str | None) -> str:
    return digest[:DIGEST_SHOWN] if digest else "none"


def _field(data: Any, name: str) -> Any:
    return data.get(name) if isinstance(data, dict) else None


def _started(event: HistoryEvent) -> str:
    return f"input {abbreviated(_field(event.data, 'input'))}"


def _record(event: HistoryEvent) -> str:
    shown = abbreviated(_field(event.data, "record"))
    return f"{shown} (void)" if event.void else shown


def _committed(event: HistoryEvent) -> str:
    status = _field(event.data, "status")
    shown = "wait" if status == "parked" else "output"
    tokens = f"{_short(event.consumed)}->{_short(event.issued)}"
    return f"{status} {shown}={abbreviated(_field(event.data, shown))} token {tokens}"


def _released(event: HistoryEvent) -> str:
    cause, error = _field(event.data, "cause"), _field(event.data, "error")
    return f"{cause}: {error}" if error else str(cause)


def _owner(event: HistoryEvent) -> str:
    return f"owner {_field(event.data, 'owner')}"


def _refused(event: HistoryEvent) -> str:
    return str(_field(event.data, "reason"))


def _closed(event: HistoryEvent) -> str:
    return f"cause {_field(event.data, 'cause')}"


# What a reader needs from each kind at a glance; --json has everything.
_SUMMARIES: dict[str, Callable[[HistoryEvent], str]] = {
    EventKind.STARTED: _started,
    EventKind.CLAIMED: _started,
    EventKind.RECORD: _record,
    EventKind.COMMITTED: _committed,
    EventKind.RELEASED: _released,
    EventKind.RENEWED: _owner,
    EventKind.EXPIRED: _owner,
    EventKind.REFUSED: _refused,
    EventKind.CLOSED: _closed,
}


def summary_of(event: HistoryEvent) -> str:
    summarise = _SUMMARIES.get(event.kind)
    return summarise(event) if summarise else abbreviated(event.data)
