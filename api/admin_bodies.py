"""The audit API's answers on the wire (api/admin.py): every stored column as stored, and
who caused each event."""

from datetime import datetime
from typing import Any

import msgspec

from baton.infra.history import HistoryEvent, SessionSummary, StoredEvent


class EventBody(msgspec.Struct, kw_only=True, rename="camel"):
    """One stored event, every column as stored."""

    position: int
    session_id: str | None
    seq: int | None
    refusal_seq: int | None
    kind: str
    turn: int | None
    consumed: str | None
    issued: str | None
    data: Any
    recorded_at: datetime
    principal: str | None  # who caused it (api/auth.py), as its data records
    hash: str | None


class HistoryEventBody(EventBody, kw_only=True, rename="camel"):
    void: bool  # a record of a turn attempt that did not commit


class SessionHistoryBody(msgspec.Struct, rename="camel"):
    session_id: str
    events: list[HistoryEventBody]
    next: str | None  # the `after` of the next page; None: this is the last


class SessionBody(msgspec.Struct, kw_only=True, rename="camel"):
    session_id: str
    status: str
    version: int
    turn: int
    created_at: datetime
    updated_at: datetime
    refusals: int
    last_outcome: Any
    owner: str | None  # the principal that started it; None: no authentication then


class SessionPageBody(msgspec.Struct):
    sessions: list[SessionBody]
    next: str | None


class FeedPageBody(msgspec.Struct):
    events: list[EventBody]
    next: str | None


_EVENT_FIELDS = tuple(name for name in EventBody.__struct_fields__ if name != "principal")


def principal_in(data: Any) -> str | None:
    """Who caused an event: its data names them (domain/events.py), when anyone was asked."""
    principal = data.get("principal") if isinstance(data, dict) else None
    return principal if isinstance(principal, str) else None


def event_body(event: StoredEvent) -> EventBody:
    fields = {name: getattr(event, name) for name in _EVENT_FIELDS}
    return EventBody(**fields, principal=principal_in(event.data))


def history_event_body(event: HistoryEvent) -> HistoryEventBody:
    fields = {name: getattr(event, name) for name in _EVENT_FIELDS}
    return HistoryEventBody(**fields, principal=principal_in(event.data), void=event.void)


def session_body(summary: SessionSummary) -> SessionBody:
    return SessionBody(**{name: getattr(summary, name) for name in SessionBody.__struct_fields__})
