"""`baton history SESSION_ID`: a session's stored events, read from the database directly.

It needs no running server. It prints what the table holds, and the table holds only
digests of tokens, never a token.
"""

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import Any

import msgspec

from api.admin import history_event_body, principal_in
from domain.events import EventKind
from infra.database import SQLITE, normalize_url
from infra.history import HistoryEvent
from infra.settings import Settings, SettingsError
from infra.stores import open_database

SUMMARY_WIDTH = 60  # characters of JSON shown for an input, a record, an output
DIGEST_SHOWN = 8  # hex characters of a token digest


def add_history_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session_id", help="the session whose events to print")
    parser.add_argument(
        "--json", action="store_true", help="print a JSON array of the events, every field"
    )


def print_history(settings: Settings, args: argparse.Namespace) -> int:
    """Exit status 0 when printed, 1 for an unknown session."""
    _require_sqlite_file(settings)
    history = asyncio.run(_read(settings, args.session_id))
    if history is None:
        print(f"baton: unknown session {args.session_id[:200]!r}", file=sys.stderr)
        return 1
    print(as_json(history) if args.json else "\n".join(map(line_of, history)))
    return 0


def _require_sqlite_file(settings: Settings) -> None:
    # Connecting would create an empty file: a mistyped path should say so instead.
    url = normalize_url(settings.database_url)
    if url.get_backend_name() == SQLITE and not Path(str(url.database)).is_file():
        raise SettingsError(f"no SQLite database at {url.database}")


async def _read(settings: Settings, session_id: str) -> list[HistoryEvent] | None:
    async with open_database(settings) as database:
        return await database.reader.session_events(session_id)


def as_json(history: list[HistoryEvent]) -> str:
    encoded = msgspec.json.encode([history_event_body(event) for event in history])
    return msgspec.json.format(encoded, indent=2).decode()


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
