"""The demo turn handler, the default for `baton serve`: a tiny echoing agent.

Input `{"message": str}`. It journals the message, streams its reply word by word, and
counts turns in its committed state. `/park` parks the turn; `/fail` raises after it has
journalled the message, so a failed turn and its voided record can be seen from outside.
"""

import asyncio

import msgspec

from baton.domain.handler import InvalidInput, Turn, takes
from baton.domain.json import JsonValue
from baton.domain.outcomes import Finished, Parked

# A pause between words, so a stream visibly arrives piece by piece (try `curl -N`).
DELTA_PAUSE_SECONDS = 0.02


def _turns_so_far(state: JsonValue) -> int:
    if isinstance(state, dict):
        turns = state.get("turns")
        if isinstance(turns, int):
            return turns
    return 0


class DemoInput(msgspec.Struct):
    """What the demo handler takes: `{"message": "<text>"}` (other fields are ignored)."""

    message: str


@takes(DemoInput)
async def demo_handler(turn: Turn) -> Finished | Parked:
    message = turn.input.get("message")
    if not isinstance(message, str):  # only when called without Baton's check before it
        raise InvalidInput('the demo handler takes {"message": "<text>"}')
    await turn.record({"role": "user", "text": message})
    if message == "/fail":
        raise RuntimeError("the demo handler was asked to fail")
    count = _turns_so_far(turn.state) + 1
    state: JsonValue = {"turns": count}
    if message == "/park":
        return Parked(wait={"for": "message"}, state=state)
    reply = f"You said: {message}"
    words = reply.split(" ")
    for index, word in enumerate(words):
        if index:
            await asyncio.sleep(DELTA_PAUSE_SECONDS)
        await turn.delta(word if index == len(words) - 1 else f"{word} ")
    return Finished(output={"reply": reply, "turn": count}, state=state)


async def instant_handler(turn: Turn) -> Finished:
    """`--handler bench`: answers at once with no records or deltas, so a benchmark
    measures Baton and the database, not the application."""
    return Finished({"turn": turn.number})
