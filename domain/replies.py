"""A committed turn's reply, rebuilt from what the store kept of it (PROTOCOL section 6.4):
the records its committing attempt journalled, its outcome, and the token it issued."""

from collections.abc import Sequence

from baton.domain.events import RecordAppended, SessionEvent, TurnCommitted, kind_of
from baton.domain.history import void_records
from baton.domain.identifiers import SessionId
from baton.domain.turn import TurnReply


class ReplyLost(LookupError):
    """The store no longer holds the turn a seal names (it was pruned): nothing to replay."""


def stored_reply(
    session_id: SessionId, turn: int, events: Sequence[SessionEvent], token: str
) -> TurnReply:
    """The reply turn `turn` gave, from its stored events (any order), with `token`."""
    mine = [event for event in events if event.turn == turn]
    committed = [event for event in mine if isinstance(event, TurnCommitted)]
    if not committed:
        raise ReplyLost(f"session {session_id} has no commit of turn {turn}")
    void = {event.seq for event in void_records(mine, kind_of)}
    kept = sorted(
        (e for e in mine if isinstance(e, RecordAppended) and e.seq not in void),
        key=lambda record: record.seq,
    )
    return TurnReply(
        session_id=session_id,
        turn=turn,
        outcome=committed[0].outcome,
        token=token,
        seq=committed[0].seq,
        records=[record.record for record in kept],
        replayed=True,
        record_seqs=tuple(record.seq for record in kept),
    )
