"""Leases on the database's clock (PostgreSQL): a replica whose own clock runs a minute
ahead sees a live, renewing turn as live, and cannot take it over."""

import asyncio
import shutil
from pathlib import Path

import httpx
import pytest

from tests.databases import IN_CI, fresh_database, require_postgres
from tests.e2e.server import TEST_HANDLER, BatonServer
from tests.e2e.store_probe import probe, wait_for_status

pytestmark = pytest.mark.e2e
AHEAD = ("faketime", "-f", "+60s")  # Debian's libfaketime: the clock of the process only


def require_faketime() -> None:
    if shutil.which("faketime") is None:
        if IN_CI:
            pytest.fail("faketime is not installed; CI requires it", pytrace=False)
        pytest.skip("faketime is not installed (make test installs it: .ci/system-packages)")


async def test_a_replica_a_minute_ahead_cannot_take_over_a_live_turn(tmp_path: Path) -> None:
    require_postgres()
    require_faketime()
    let_go = tmp_path / "let-go"
    with fresh_database("postgresql", tmp_path) as database:
        args = ("--handler", TEST_HANDLER, "--lease", "3")
        with (
            BatonServer(database, tmp_path / "honest.log", *args) as honest,
            BatonServer(database, tmp_path / "ahead.log", *args, wrapper=AHEAD) as ahead,
        ):
            async with httpx.AsyncClient(timeout=30) as client, probe(database) as engine:
                started = (
                    await client.post(f"{honest.url}/v1/session", json={"message": "a"})
                ).json()
                session_id, token = started["sessionId"], started["continuationToken"]
                held = asyncio.create_task(
                    client.post(
                        f"{honest.url}/v1/session/{session_id}/message",
                        json={"message": "/hold", "until": str(let_go), "continuationToken": token},
                    )
                )
                await wait_for_status(engine, session_id, "in-flight")
                # By its own clock the lease (3 s, renewed every second) lapsed a minute ago.
                for _ in range(3):
                    taken = await client.post(
                        f"{ahead.url}/v1/session/{session_id}/message",
                        json={"message": "takeover?", "continuationToken": token},
                    )
                    assert (taken.status_code, taken.json()["reason"]) == (409, "in-flight")
                let_go.touch()
                finished = await held
    assert finished.status_code == 200, finished.text
    assert finished.json()["turn"] == 2  # the live turn committed, untaken
    # faketime forks the server and passes no signal on: the server must be gone all the same.
    async with httpx.AsyncClient(timeout=1) as client:
        with pytest.raises(httpx.TransportError):
            await client.get(f"{ahead.url}/healthz")
