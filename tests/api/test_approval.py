"""The example approval handler (api/approval.py): sessions that park for a person's
decision, journal every step, refuse input that does not fit their stage without losing
the token, and keep their state in the database (both backends)."""

from collections.abc import AsyncIterator
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.api.app import create_app
from baton.api.approval import approval_handler
from baton.infra.settings import Settings
from tests.api.conftest import in_process_client, running


@pytest.fixture(scope="module")
async def client(settings: Settings, engine: AsyncEngine) -> AsyncIterator[AsyncClient]:
    app = create_app(settings, handler=approval_handler)
    async with running(app), in_process_client(app) as http:
        yield http


class Expense:
    def __init__(self, client: AsyncClient, reply: dict[str, Any]) -> None:
        self.client = client
        self.session_id = reply["sessionId"]
        self.token = reply["continuationToken"]
        self.last = reply

    @classmethod
    async def filed(cls, client: AsyncClient, amount: int, purpose: str = "travel") -> "Expense":
        submit = {"amount": amount, "purpose": purpose, "requester": "ana"}
        response = await client.post("/v1/session", json={"submit": submit})
        assert response.status_code == 200, response.text
        return cls(client, response.json())

    async def send(self, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
        response = await self.client.post(
            f"/v1/session/{self.session_id}/message",
            json={**body, "continuationToken": self.token},
        )
        assert response.status_code == status, response.text
        reply: dict[str, Any] = response.json()
        if status == 200:
            self.token, self.last = reply["continuationToken"], reply
        return reply


async def test_a_small_expense_is_approved_by_policy_at_once(client: AsyncClient) -> None:
    expense = await Expense.filed(client, 120)
    assert (expense.last["status"], expense.last["output"]) == (
        "finished",
        {"stage": "approved", "by": "policy"},
    )
    assert [record["step"] for record in expense.last["records"]] == ["received", "auto-approved"]


async def test_a_large_expense_parks_until_someone_else_approves_it(client: AsyncClient) -> None:
    expense = await Expense.filed(client, 1200, "conference")
    assert expense.last["status"] == "parked"
    assert expense.last["wait"] == {"for": "decide", "amount": 1200}
    # The requester may not approve their own: the client's error, the token survives.
    own = await expense.send({"decide": "approve", "by": "ana"}, status=422)
    assert own["reason"] == "invalid-input"
    assert "their own expense" in own["error"]
    approved = await expense.send({"decide": "approve", "by": "lee", "note": "ok"})
    assert approved["output"] == {"stage": "approved", "by": "lee"}
    assert approved["records"] == [
        {"step": "decided", "by": "lee", "decision": "approve", "note": "ok"}
    ]
    late = await expense.send({"decide": "reject", "by": "kim"}, status=422)
    assert "approved: nothing more can be done" in late["error"]


async def test_a_rejected_expense_is_revised_and_reviewed_again(client: AsyncClient) -> None:
    expense = await Expense.filed(client, 900, "golf")
    assert expense.last["status"] == "parked"
    assert expense.last["wait"]["for"] == "revise"
    assert "purpose must be one of" in expense.last["wait"]["problems"][0]
    revised = await expense.send({"revise": {"purpose": "training"}})
    assert (revised["status"], revised["wait"]) == ("parked", {"for": "decide", "amount": 900})
    rejected = await expense.send({"decide": "reject", "by": "lee", "note": "too much"})
    assert rejected["wait"] == {"for": "revise", "note": "too much"}
    again = await expense.send({"revise": {"amount": 400}})
    assert again["output"] == {"stage": "approved", "by": "policy"}
    read = await client.get(
        f"/v1/session/{expense.session_id}", headers={"X-Continuation-Token": expense.token}
    )
    state_turn = read.json()["turn"]
    assert state_turn == 4


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"decide": "approve", "by": "lee"},  # nothing filed yet
        {"submit": {"amount": "lots", "purpose": "travel", "requester": "ana"}},
        {"submit": {"amount": 5, "purpose": "travel"}},
        {"submit": {"amount": 5, "purpose": "travel", "requester": "ana"}, "extra": 1},
    ],
)
async def test_input_that_does_not_fit_is_422_invalid_input(
    client: AsyncClient, body: dict[str, Any]
) -> None:
    response = await client.post("/v1/session", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["reason"] == "invalid-input"
