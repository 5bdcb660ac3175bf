"""How a turn ends (PROTOCOL section 4)."""

from dataclasses import dataclass
from enum import Enum
from typing import Literal

from baton.domain.json import JsonValue, json_problem
from baton.domain.values import value


class Keep(Enum):
    """Marks an outcome that leaves the handler's committed state as it was."""

    STATE = "keep"


KEEP = Keep.STATE
StateUpdate = JsonValue | Literal[Keep.STATE]


@dataclass(frozen=True, slots=True)
class Finished:
    """The turn produced its answer; the session stays open for more turns."""

    output: JsonValue
    state: StateUpdate = KEEP
    status: Literal["finished"] = "finished"


@dataclass(frozen=True, slots=True)
class Parked:
    """The turn stopped to wait for something outside; `wait` says what."""

    wait: JsonValue
    state: StateUpdate = KEEP
    status: Literal["parked"] = "parked"


@value
class Contended:
    """The turn could not commit because the session moved on; nothing of it was kept."""

    current: int
    status: Literal["contended"] = "contended"


HandlerOutcome = Finished | Parked
"""What a turn handler returns: both commit."""

TurnOutcome = Finished | Parked | Contended


def checked_outcome(outcome: object) -> HandlerOutcome:
    """A handler's return value, if it can commit; else a TypeError that fails the turn."""
    if not isinstance(outcome, Finished | Parked):
        raise TypeError(f"a turn handler must return Finished or Parked, not {outcome!r}")
    payload = outcome.output if isinstance(outcome, Finished) else outcome.wait
    problem = json_problem(payload)
    if problem is None and outcome.state is not KEEP:
        problem = json_problem(outcome.state)
    if problem is not None:
        raise TypeError(f"a turn's output, wait and state must be JSON values: {problem}")
    return outcome
