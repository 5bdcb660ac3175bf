"""The approval example across a crash: an expense parked for a decision is decided by a
request to a server started after the first was killed (kill -9), both backends."""

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.databases import fresh_database
from tests.e2e.server import BatonServer

pytestmark = pytest.mark.e2e


@pytest.fixture
def database(backend: str, tmp_path: Path) -> Iterator[str]:
    with fresh_database(backend, tmp_path) as url:
        yield url


def test_a_parked_expense_is_decided_after_a_kill_9(database: str, tmp_path: Path) -> None:
    first = BatonServer(database, tmp_path / "first.log", "--handler", "approval").start()
    submit = {"amount": 2500, "purpose": "equipment", "requester": "ana"}
    filed = httpx.post(f"{first.url}/v1/session", json={"submit": submit}, timeout=30).json()
    assert (filed["status"], filed["wait"]) == ("parked", {"for": "decide", "amount": 2500})
    first.kill()
    with BatonServer(database, tmp_path / "second.log", "--handler", "approval") as second:
        decided = httpx.post(
            f"{second.url}/v1/session/{filed['sessionId']}/message",
            json={
                "decide": "approve",
                "by": "lee",
                "continuationToken": filed["continuationToken"],
            },
            timeout=30,
        )
    assert decided.status_code == 200, decided.text
    assert decided.json()["output"] == {"stage": "approved", "by": "lee"}
    assert decided.json()["turn"] == 2
