"""A released turn's stored end, as a resumed stream reads it (PROTOCOL section 6.3)."""

from datetime import UTC, datetime

import pytest

from baton.api.wire import stored_objects
from baton.domain.events import ReleaseCause, TurnReleased
from baton.domain.identifiers import SessionId

EXPECTED = {
    ReleaseCause.FAILED: "turn-failed",
    ReleaseCause.TIMED_OUT: "turn-failed",
    ReleaseCause.CANCELLED: "cancelled",
    ReleaseCause.SHUT_DOWN: "unavailable",
    # Found by the chaos run through PgBouncer: a turn the database failed under was stored
    # as failed, so a client whose stream was cut read `turn-failed` on resuming, where the
    # live stream had said `unavailable` (retry).
    ReleaseCause.UNAVAILABLE: "unavailable",
    ReleaseCause.INVALID_INPUT: "invalid-input",
}


@pytest.mark.parametrize("cause", list(ReleaseCause))
def test_every_release_cause_reads_as_its_error(cause: ReleaseCause) -> None:
    released = TurnReleased(
        session_id=SessionId("01a23d43-21ca-756f-9790-a77f0078f60a"),
        seq=14,
        turn=5,
        cause=cause,
        error="the database became unavailable during the turn",
        at=datetime(2026, 12, 3, tzinfo=UTC),
    )
    ((body, seq),) = stored_objects([released])
    assert (body["type"], body["reason"], body["turn"], seq) == ("error", EXPECTED[cause], 5, 14)
