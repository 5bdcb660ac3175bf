"""Exports to tamper with: a session with every kind of event, exported for real, then
edited line by line and re-hashed, so that only what the lines mean is wrong."""

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from baton.domain.commands import StartSession
from baton.domain.decisions import ClaimGranted
from baton.domain.events import ReleaseCause
from baton.domain.identifiers import SessionId, digest_token
from baton.domain.outcomes import Finished, Parked
from baton.domain.ports import SessionStore
from baton.domain.refusals import Refusal
from baton.infra.chain import link, payload
from baton.infra.transfer import export_sessions, import_sessions
from tests import store_calls as calls
from tests.infra.test_store import lease, new_id, new_token, now

OWNER = "key:alice"
Record = dict[str, Any]


async def rich_session(store: SessionStore) -> SessionId:
    """Seqs: 1 started, 2 record, 3 committed (turn 1); 4 claimed, 5 renewed, 6 record,
    7 committed (turn 2); 8 claimed, 9 cancel-requested, 10 released (turn 3); 11 claimed,
    12 expired, 13 claimed, 14 committed (turn 3); 15 closed. Refusals: 1 stale-token,
    2 closed. Started by OWNER."""
    session_id = new_id()
    start = StartSession(
        session_id=session_id, at=now(), input={"m": "hi"}, lease=lease(), principal=OWNER
    )
    granted = await store.start(start)
    assert isinstance(granted, ClaimGranted)
    await calls.append_record(store, session_id, granted.claim, {"n": 1}, now())
    first = new_token()
    await calls.commit(
        store, session_id, granted.claim, Finished("one"), digest_token(first), now(), consumed=None
    )
    second = await _turn_two(store, session_id, first)
    third = await _turn_three(store, session_id, second)
    await calls.claim(store, session_id, digest_token("forged"), {}, now(), lease())
    closed = await calls.close(store, session_id, digest_token(third), now())
    assert not isinstance(closed, Refusal), closed
    await calls.claim(store, session_id, digest_token(third), {}, now(), lease())
    return session_id


async def _turn_two(store: SessionStore, session_id: SessionId, token: str) -> str:
    granted = await calls.claim(store, session_id, digest_token(token), {"m": 2}, now(), lease())
    assert isinstance(granted, ClaimGranted)
    await calls.renew(store, session_id, granted.claim, lease(120), now())
    await calls.append_record(store, session_id, granted.claim, {"n": 2}, now())
    following = new_token()
    outcome = Parked({"for": "x"}, state={"n": 2})
    await calls.commit(
        store,
        session_id,
        granted.claim,
        outcome,
        digest_token(following),
        now(),
        consumed=digest_token(token),
    )
    return following


async def _turn_three(store: SessionStore, session_id: SessionId, token: str) -> str:
    current = digest_token(token)
    cancelled = await calls.claim(store, session_id, current, {"m": 3}, now(), lease())
    assert isinstance(cancelled, ClaimGranted)
    await calls.cancel(store, session_id, current, now())
    await calls.release(store, session_id, cancelled.claim, ReleaseCause.CANCELLED, None, now())
    lapsing = await calls.claim(store, session_id, current, {"m": 3}, now(), lease(seconds=1))
    assert isinstance(lapsing, ClaimGranted)
    later = now() + timedelta(seconds=2)
    taken = await calls.claim(store, session_id, current, {"m": 3}, later, lease())
    assert isinstance(taken, ClaimGranted)
    following = new_token()
    await calls.commit(
        store,
        session_id,
        taken.claim,
        Finished(3),
        digest_token(following),
        now(),
        consumed=current,
    )
    return following


async def exported(engine: AsyncEngine, *session_ids: str) -> list[Record]:
    """The export of the sessions, one parsed line each (header and end line included)."""
    out = io.StringIO()
    await export_sessions(engine, out, list(session_ids))
    return [json.loads(line) for line in out.getvalue().splitlines()]


def rehash(records: list[Record], *, renumber: bool = True) -> list[Record]:
    """The event lines' hashes computed again (after an edit), each session's two chains
    from the start; with `renumber`, seqs and refusal places first made consecutive again.
    The header and end line pass through; the end line is recounted."""
    heads: dict[tuple[str, str], tuple[str | None, int]] = {}
    for record in records:
        if "sessionId" not in record:
            continue
        side = record["seq"] is None
        key = (record["sessionId"], "refusal" if side else "seq")
        head, place = heads.get(key, (None, 0))
        field = "refusalSeq" if side else "seq"
        if renumber:
            record[field] = place + 1
        place = record[field]
        turn = None if side else record["turn"]
        record["hash"] = link(head, place, turn, _payload(record))
        heads[key] = (record["hash"], place)
    return _recounted(records)


def _payload(record: Record) -> bytes:
    at = datetime.fromisoformat(record["recordedAt"].replace("Z", "+00:00"))
    return payload(
        session_id=record["sessionId"],
        kind=record["kind"],
        consumed=record["consumed"],
        issued=record["issued"],
        data=record["data"],
        recorded_at=at,
    )


def _recounted(records: list[Record]) -> list[Record]:
    events = [record for record in records if "sessionId" in record]
    sessions = len({record["sessionId"] for record in events})
    return [
        {**record, "sessions": sessions, "events": len(events)} if "end" in record else record
        for record in records
    ]


def text(records: list[Record]) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


@contextmanager
def _lines(content: str | bytes) -> Iterator[list[Any]]:
    yield content.splitlines(keepends=True)


async def import_text(engine: AsyncEngine, content: str | bytes) -> tuple[int, int]:
    return await import_sessions(engine, lambda: _lines(content))
