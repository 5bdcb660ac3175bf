"""The handler the client's tests serve: tests.handlers.test_handler (the demo, /hold, /sleep),
plus `{"quick": text}`, which journals the text and finishes at once (no deltas, no pauses),
so a test can run hundreds of turns in a few seconds."""

from baton.domain.handler import Turn
from baton.domain.outcomes import Finished, Parked
from tests.handlers import test_handler


async def client_handler(turn: Turn) -> Finished | Parked:
    if "quick" in turn.input:
        await turn.record({"quick": turn.input["quick"]})
        return Finished({"echo": turn.input["quick"], "turn": turn.number})
    return await test_handler(turn)
