"""An example worth copying: an expense approval that parks while it waits for a person.

`baton serve --handler approval`. The first turn files an expense; the handler checks it
against a small policy (deterministic, no network), journals each step as a record, and
either approves it at once or parks, waiting for a human decision. That decision comes as
the next turn, hours or days later and after any number of restarts: the session, its
token and its state are all in the database, so whoever holds the token continues it.

    {"submit": {"amount": 1200, "purpose": "conference", "requester": "ana"}}
    {"decide": "approve" | "reject", "by": "lee", "note": "..."}   # while awaiting-approval
    {"revise": {"amount": 900}}                                    # after a rejection
    {"withdraw": true}                                             # either of those

The committed state's `stage`: awaiting-approval (parked), rejected (parked, may be
revised and reviewed again), approved and withdrawn (final). Input that does not fit the
stage is the client's error (422 invalid-input): nothing commits and the token stays valid.
"""

from typing import Literal, cast

import msgspec

from baton.domain.handler import InvalidInput, Turn, takes
from baton.domain.json import JsonObject
from baton.domain.outcomes import Finished, Parked

AUTO_APPROVE_UP_TO = 500  # the policy: small amounts need no one
LIMIT = 10_000  # above this, no one can approve: rejected by policy
PURPOSES = frozenset({"travel", "conference", "equipment", "training", "software"})


class Expense(msgspec.Struct, forbid_unknown_fields=True):
    amount: int
    purpose: str
    requester: str


class Revision(msgspec.Struct, forbid_unknown_fields=True):
    amount: int | None = None
    purpose: str | None = None


class ApprovalInput(msgspec.Struct, forbid_unknown_fields=True):
    """One of: submit an expense; decide on it; revise a rejected one; withdraw it."""

    submit: Expense | None = None
    decide: Literal["approve", "reject"] | None = None
    by: str | None = None
    note: str | None = None
    revise: Revision | None = None
    withdraw: bool | None = None


class Decision(msgspec.Struct, omit_defaults=True):
    by: str
    decision: str
    note: str | None = None
    problems: list[str] = []


class Approval(msgspec.Struct):
    """The committed state: the expense, where it stands, and every decision so far."""

    stage: str
    expense: Expense
    history: list[Decision] = []

    def moved(self, stage: str, decision: Decision | None = None) -> JsonObject:
        history = [*self.history, decision] if decision is not None else self.history
        return cast(JsonObject, msgspec.to_builtins(Approval(stage, self.expense, history)))


@takes(ApprovalInput)
async def approval_handler(turn: Turn) -> Finished | Parked:
    request = msgspec.convert(turn.input, ApprovalInput)
    filed = msgspec.convert(turn.state, Approval) if turn.state is not None else None
    stage = filed.stage if filed is not None else None
    if request.submit is not None and filed is None:
        return await _review(turn, Approval("new", request.submit))
    if filed is None:
        raise InvalidInput(_what_fits(stage))
    if request.decide is not None and stage == "awaiting-approval":
        return await _decide(turn, filed, request)
    if request.revise is not None and stage == "rejected":
        changes = msgspec.structs.asdict(request.revise)
        revised = msgspec.structs.replace(
            filed.expense, **{name: value for name, value in changes.items() if value is not None}
        )
        return await _review(turn, msgspec.structs.replace(filed, expense=revised))
    if request.withdraw and stage in {"awaiting-approval", "rejected"}:
        await turn.record({"step": "withdrawn"})
        return Finished({"stage": "withdrawn"}, state=filed.moved("withdrawn"))
    raise InvalidInput(_what_fits(stage))


async def _review(turn: Turn, filed: Approval) -> Finished | Parked:
    """Check an expense against the policy, step by step, each step in the journal."""
    expense = filed.expense
    await turn.record({"step": "received", "expense": msgspec.to_builtins(expense)})
    problems = _problems(expense)
    for problem in problems:
        await turn.record({"step": "check-failed", "problem": problem})
    if problems:
        rejected = Decision("policy", "reject", problems=problems)
        wait: JsonObject = {"for": "revise", "problems": list(problems)}
        return Parked(wait=wait, state=filed.moved("rejected", rejected))
    if expense.amount <= AUTO_APPROVE_UP_TO:
        await turn.record({"step": "auto-approved", "rule": f"amount <= {AUTO_APPROVE_UP_TO}"})
        approved = filed.moved("approved", Decision("policy", "approve"))
        return Finished({"stage": "approved", "by": "policy"}, state=approved)
    await turn.record({"step": "needs-approval", "amount": expense.amount})
    waiting = filed.moved("awaiting-approval")
    return Parked(wait={"for": "decide", "amount": expense.amount}, state=waiting)


async def _decide(turn: Turn, filed: Approval, request: ApprovalInput) -> Finished | Parked:
    if not request.by:
        raise InvalidInput('a decision names who made it: {"decide": ..., "by": "<name>"}')
    if request.by == filed.expense.requester:
        raise InvalidInput("a requester cannot approve or reject their own expense")
    assert request.decide is not None  # noqa: S101 - the caller checked
    decision = Decision(request.by, request.decide, request.note)
    await turn.record({"step": "decided", **cast(JsonObject, msgspec.to_builtins(decision))})
    if request.decide == "approve":
        approved = filed.moved("approved", decision)
        return Finished({"stage": "approved", "by": request.by}, state=approved)
    return Parked(
        wait={"for": "revise", "note": request.note}, state=filed.moved("rejected", decision)
    )


def _problems(expense: Expense) -> list[str]:
    problems = []
    if expense.amount <= 0:
        problems.append("the amount must be positive")
    if expense.amount > LIMIT:
        problems.append(f"amounts over {LIMIT} need a purchase order, not an expense")
    if expense.purpose not in PURPOSES:
        problems.append(f"the purpose must be one of {', '.join(sorted(PURPOSES))}")
    return problems


def _what_fits(stage: str | None) -> str:
    expected = {
        None: '{"submit": {"amount": ..., "purpose": ..., "requester": ...}}',
        "awaiting-approval": '{"decide": "approve" or "reject", "by": ...} or {"withdraw": true}',
        "rejected": '{"revise": {...}} or {"withdraw": true}',
    }
    if stage in expected:
        return f"this expense is {stage or 'not filed yet'}: send {expected[stage]}"
    return f"this expense is {stage}: nothing more can be done with it"
