"""Values as SQLite holds them, laid out exactly as SQLAlchemy lays them out (uuid as 32 hex
digits, times as "YYYY-MM-DD HH:MM:SS.ffffff" UTC, JSON as text), so that rows written with
plain `sqlite3` read the same through infra/tables.py, and the other way round."""

import sqlite3
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec

from baton.domain.state import SessionState
from baton.infra.codec import row_to_state
from baton.infra.tables import SESSION_FIELDS
from baton.infra.utc_text import utc_micro

_json_encoder = msgspec.json.Encoder()
_TIME_FIELDS = ("lease_until", "created_at", "updated_at")
_UPDATED_TIME_FIELDS = ("lease_until", "updated_at")
_JSON_FIELDS = ("state", "last_outcome")


def json_text(value: Any) -> str:
    return _json_encoder.encode(value).decode()


def json_value(text: str | None) -> Any:
    return msgspec.json.decode(text) if text is not None else None


def time_text(at: datetime) -> str:
    """SQLAlchemy's layout, zero-padded year included; a turn formats about ten times."""
    return utc_micro(at).replace("T", " ")


def parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text).replace(tzinfo=UTC) if text is not None else None


def db_id(session_id: str) -> str:
    return session_id.replace("-", "")


def session_id_of(hex_id: str) -> str:
    return f"{hex_id[:8]}-{hex_id[8:12]}-{hex_id[12:16]}-{hex_id[16:20]}-{hex_id[20:]}"


def event_values(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """A planned event row (with its hash) as INSERT_EVENT's values."""
    session_id = row["session_id"]
    return (
        db_id(session_id) if session_id is not None else None,
        row["seq"],
        row.get("refusal_seq"),
        row["kind"],
        row["turn"],
        row["consumed"],
        row["issued"],
        json_text(row["data"]),
        time_text(row["recorded_at"]),
        row["hash"],
    )


def event_from(db_row: sqlite3.Row | Mapping[str, Any]) -> dict[str, Any]:
    """An event-table row as SQLAlchemy would have returned it."""
    row = dict(db_row)
    if row["session_id"] is not None:
        row["session_id"] = session_id_of(row["session_id"])
    row["data"] = json_value(row["data"])
    row["recorded_at"] = parse_time(row["recorded_at"])
    return row


def projection_values(projection: Mapping[str, Any], *, new: bool = True) -> dict[str, Any]:
    """A planned projection row in SQLite's layout; for an update (`new=False`) without
    `created_at`, which an update never writes (one time fewer to format)."""
    row = dict(projection)
    row["session_id"] = db_id(row["session_id"])
    for column in _JSON_FIELDS:
        row[column] = json_text(row[column])
    for column in _TIME_FIELDS if new else _UPDATED_TIME_FIELDS:
        row[column] = time_text(row[column]) if row[column] is not None else None
    if not new:
        del row["created_at"]
    return row


def projection_from(db_row: sqlite3.Row | Mapping[str, Any]) -> dict[str, Any]:
    """A projection row as SQLAlchemy would have returned it."""
    row = {field: db_row[field] for field in SESSION_FIELDS}
    row["session_id"] = session_id_of(row["session_id"])
    for column in _JSON_FIELDS:
        row[column] = json_value(row[column])
    for column in _TIME_FIELDS:
        row[column] = parse_time(row[column])
    return row


def state_from(db_row: Mapping[str, Any]) -> SessionState:
    return row_to_state(projection_from(db_row))


def seal_values(seal: Mapping[str, Any]) -> tuple[Any, ...]:
    """A planned recovery row (infra.planning.seal_row) in SEAL_FIELDS order."""
    return (
        seal["lookup"],
        db_id(seal["session_id"]),
        seal["turn"],
        seal["sealed"],
        seal["key_digest"],
        seal["fingerprint"],
        time_text(seal["expires_at"]),
    )
