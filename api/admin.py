"""The audit API under /v1/admin: session histories, the session list and the global feed.

Only holders of an admin key (BATON_ADMIN_KEYS) get in. With no key configured the routes
are not registered at all, so every admin path is a plain 404, as if it did not exist.
"""

import hashlib
import hmac
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from litestar import Request, Response, Router, get
from litestar.connection import ASGIConnection
from litestar.datastructures import CacheControlHeader, State
from litestar.exceptions import ValidationException
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, QueryParameter

from baton.api.admin_bodies import (
    FeedPageBody,
    SessionHistoryBody,
    SessionPageBody,
    event_body,
    history_event_body,
    session_body,
)
from baton.api.errors import BAD_REQUEST, UNAUTHORIZED, ApiError, error_response
from baton.api.schemas import ErrorBody
from baton.domain.refusals import unknown_session
from baton.domain.state import SessionStatus
from baton.infra.history import (
    MAX_PAGE,
    InvalidCursor,
    SessionFilter,
    SessionReader,
)

MESSAGE_LIMIT = 300  # a message names the bad parameter; it never echoes a 10 KB value

Limit = Annotated[int, QueryParameter(ge=1, le=MAX_PAGE, description="page size, 1 to 500")]
Cursor = Annotated[
    str | None,
    QueryParameter(description="the `next` of the previous page; absent: from the start"),
]
CreatedBound = Annotated[
    datetime | None,
    QueryParameter(description="ISO 8601 with a time zone, e.g. 2026-01-01T00:00:00Z"),
]
StatusFilter = Annotated[SessionStatus | None, QueryParameter(description="only this status")]


# --------------------------------------------------------------- access


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def _bearer(authorization: str | None) -> str | None:
    scheme, _, credentials = (authorization or "").partition(" ")
    credentials = credentials.strip()
    return credentials if scheme.lower() == "bearer" and credentials else None


class AdminKeyGuard:
    """Admits a request whose `Authorization: Bearer` is one of the admin keys.

    Digests of equal length are compared in constant time against every key, without
    stopping at a match, so the time taken tells nothing about which key (or how much of
    one) was right. A continuation token is never an admin key, wherever it is presented.
    """

    def __init__(self, keys: tuple[str, ...]) -> None:
        self._digests = tuple(_digest(key) for key in keys)

    def admits(self, authorization: str | None) -> bool:
        presented = _bearer(authorization)
        if presented is None:
            return False
        digest = _digest(presented)
        matched = False
        for key in self._digests:
            matched |= hmac.compare_digest(digest, key)
        return matched

    def __call__(self, connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        authorization = connection.headers.get("authorization")
        if authorization is None:
            raise ApiError(UNAUTHORIZED, "admin routes need Authorization: Bearer <admin key>")
        if not self.admits(authorization):
            raise ApiError(UNAUTHORIZED, "not an admin key")


# --------------------------------------------------------------- bad input


def _invalid_parameter(
    request: Request[Any, Any, Any], error: ValidationException
) -> Response[bytes]:
    """Litestar's parameter validation, answered with the parameter's name (Litestar's own
    detail repeats the whole URL, however long)."""
    problems = error.extra if isinstance(error.extra, list) else []
    named = [f"{problem['key']}: {problem['message']}" for problem in problems if "key" in problem]
    message = f"invalid {'; '.join(named)}" if named else "invalid request parameters"
    return error_response(request, BAD_REQUEST, message[:MESSAGE_LIMIT])


def _aware(name: str, value: datetime | None) -> datetime | None:
    """The bound in UTC. One that UTC puts past the years a datetime holds (9999-12-31T23:00
    at -02:00, say) is before every session or after them all: the first or last instant."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ApiError(BAD_REQUEST, f"{name} needs a time zone, e.g. 2026-01-01T00:00:00Z")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        return (datetime.max if value.year == datetime.max.year else datetime.min).replace(
            tzinfo=UTC
        )


# Litestar converts query parameters leniently: the word `null` reads as absent for an
# optional parameter that is not text (`?status=null` would list every session), and a
# number as a Unix time for a datetime. A filter is what the schema says, or absent.
DATE_TIME = re.compile(  # RFC 3339, as the schema's `date-time`
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
TIME_FILTERS = ("created_after", "created_before")


def _strict_filters(request: Request[Any, Any, Any]) -> None:
    if "null" in request.query_params.getall("status", []):
        raise ApiError(BAD_REQUEST, "invalid status: null (leave it out for every status)")
    for name in TIME_FILTERS:
        if any(
            DATE_TIME.fullmatch(value) is None for value in request.query_params.getall(name, [])
        ):
            raise ApiError(
                BAD_REQUEST, f"{name} must be an RFC 3339 date-time, e.g. 2026-01-01T00:00:00Z"
            )


def _bad_cursor(error: InvalidCursor) -> ApiError:
    return ApiError(BAD_REQUEST, f"after is not a cursor this server handed out ({error})")


def _reader(state: State) -> SessionReader:
    reader: SessionReader = state.reader
    return reader


# --------------------------------------------------------------- the routes


def _error(description: str) -> ResponseSpec:
    return ResponseSpec(data_container=ErrorBody, description=description)


RESPONSES = {
    400: _error("bad-request: a parameter out of range or malformed; the message names it"),
    401: _error("unauthorized: no admin key in `Authorization: Bearer <key>`"),
}


@get("/sessions", responses=RESPONSES, before_request=_strict_filters)
async def admin_sessions(
    state: State,
    status: StatusFilter = None,
    created_after: CreatedBound = None,
    created_before: CreatedBound = None,
    after: Cursor = None,
    limit: Limit = 50,
) -> SessionPageBody:
    """Sessions in creation order, filtered; `created_after` inclusive, `created_before` not."""
    try:
        query = SessionFilter(
            status=status,
            created_after=_aware("created_after", created_after),
            created_before=_aware("created_before", created_before),
            after=after or None,  # an empty query parameter is an absent one
            limit=limit,
        )
        page, following = await _reader(state).list_sessions(query)
    except InvalidCursor as error:
        raise _bad_cursor(error) from None
    return SessionPageBody(sessions=[session_body(row) for row in page], next=following)


@get(
    "/sessions/{session_id:str}/events",
    responses={**RESPONSES, 404: _error("unknown-session")},
)
async def admin_session_events(
    state: State, session_id: FromPath[str], after: Cursor = None, limit: Limit = MAX_PAGE
) -> SessionHistoryBody:
    """A page of a session's stored events, refusals included, in position order, each
    marked void as the whole history marks it. Pass `next` back as `after` for the next
    page; `next` is null on the last. A session flooded with refusals is read a page at a
    time, never whole."""
    try:
        history = await _reader(state).history_page(session_id, _position(after), limit)
    except InvalidCursor as error:
        raise _bad_cursor(error) from None
    if history is None:
        raise ApiError.refused(unknown_session(session_id))
    page, following = history
    return SessionHistoryBody(
        session_id=session_id.lower(),
        events=[history_event_body(event) for event in page],
        next=following,
    )


POSITION = re.compile(r"[0-9]{1,18}")  # an event's position: a bigint, as the history cursor


def _position(after: str | None) -> int | None:
    """The position a session history's cursor names; an empty one is an absent one."""
    if not after:
        return None
    if POSITION.fullmatch(after) is None:
        raise InvalidCursor("a session history's cursor is an event position")
    return int(after)


@get("/events", responses=RESPONSES)
async def admin_events(state: State, after: Cursor = None, limit: Limit = 50) -> FeedPageBody:
    """Every event, in an order that never skips a row that commits late. Pass `next` back as
    `after` to follow; with nothing new, `next` is the cursor you gave."""
    try:
        served, following = await _reader(state).feed(after or None, limit)
    except InvalidCursor as error:
        raise _bad_cursor(error) from None
    return FeedPageBody(events=[event_body(event) for event in served], next=following)


def admin_routes(keys: tuple[str, ...], prefix: str = "/v1") -> list[Router]:
    """The admin router for `keys`, under the turn API's `prefix`; none at all without keys."""
    if not keys:
        return []
    return [
        Router(
            f"{prefix}/admin",
            route_handlers=[admin_sessions, admin_session_events, admin_events],
            guards=[AdminKeyGuard(keys)],
            exception_handlers={ValidationException: _invalid_parameter},
            # Audit data is nobody's to keep: no proxy or browser cache may store it.
            cache_control=CacheControlHeader(no_store=True),
            tags=["admin"],
        )
    ]
