"""No token in any log: a real server driven through every path (REST, SSE, WebSocket,
reads, cancels, the admin API, refusals, errors, and tokens put where they do not belong,
the upgrade URL included) writes none of the tokens it issued to its log."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.databases import fresh_database
from tests.e2e.server import TEST_HANDLER, BatonServer

pytestmark = pytest.mark.e2e
ADMIN_KEY = "an-admin-key-of-thirty-two-characters-or-more"
START_KEY = "a-start-idempotency-key-0123456789"


@pytest.fixture
def database(backend: str, tmp_path: Path) -> Iterator[str]:
    with fresh_database(backend, tmp_path) as url:
        yield url


class Secrets:
    """Every token the server issued, and every secret the test presented."""

    def __init__(self) -> None:
        self.seen: set[str] = {START_KEY, ADMIN_KEY}

    def keep(self, body: Any) -> Any:
        text = json.dumps(body)
        for field in ("continuationToken",):
            if isinstance(body, dict) and isinstance(body.get(field), str):
                self.seen.add(body[field])
        if '"continuationToken"' in text and isinstance(body, dict):
            outcome = body.get("lastOutcome") or {}
            if isinstance(outcome, dict) and isinstance(outcome.get("continuationToken"), str):
                self.seen.add(outcome["continuationToken"])
        return body


async def drive(url: str, secrets: Secrets) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        first = secrets.keep(
            (
                await http.post(
                    "/v1/session", json={"message": "hi"}, headers={"Idempotency-Key": START_KEY}
                )
            ).json()
        )
        sid, token = first["sessionId"], first["continuationToken"]
        path = f"/v1/session/{sid}"
        second = secrets.keep(
            (
                await http.post(
                    f"{path}/message", json={"message": "a", "continuationToken": token}
                )
            ).json()
        )
        # The spent token, in the body, in the header, in query strings of every route.
        await http.post(f"{path}/message", json={"message": "b", "continuationToken": token})
        await http.post(f"{path}/message?continuationToken={token}", json={"message": "c"})
        await http.get(f"/v1/nothing?token={token}&after=1")
        secrets.keep((await http.get(path, headers={"X-Continuation-Token": token})).json())
        current = second["continuationToken"]
        await http.get(
            f"{path}/events?after=0&x={current}", headers={"X-Continuation-Token": current}
        )
        stream = await http.post(
            f"{path}/message",
            json={"message": "streamed", "continuationToken": current},
            headers={"Accept": "text/event-stream"},
        )
        for line in stream.text.splitlines():
            if line.startswith("data: ") and "continuationToken" in line:
                current = secrets.keep(json.loads(line[6:]))["continuationToken"]
        await http.post(f"{path}/cancel?wait=0", headers={"X-Continuation-Token": current})
        await http.post(
            f"{path}/message", content=b"{not json", headers={"X-Continuation-Token": current}
        )
        fail = {"message": "/fail", "continuationToken": current}
        await http.post(f"{path}/message", json=fail)
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        await http.get(f"/v1/admin/sessions/{sid}/events", headers=admin)
        await http.get("/v1/admin/events?limit=5", headers=admin)
        await http.get("/v1/admin/events", headers={"Authorization": f"Bearer {current}"})
    await drive_socket(url, secrets, sid, current)


async def drive_socket(url: str, secrets: Secrets, sid: str, token: str) -> None:
    ws = url.replace("http", "ws") + "/v1/ws"
    async with websockets.connect(f"{ws}?continuationToken={token}") as refused:
        await refused.recv()  # the error frame, then the close
    async with websockets.connect(ws) as socket:
        await socket.send(
            json.dumps({"sessionId": sid, "continuationToken": token, "message": "w"})
        )
        while (event := json.loads(await socket.recv()))["type"] not in {"outcome", "error"}:
            pass
        secrets.keep(event)
        await socket.send(json.dumps({"message": "again"}))
        while (event := json.loads(await socket.recv()))["type"] not in {"outcome", "error"}:
            pass
        secrets.keep(event)


async def test_a_server_driven_through_every_path_logs_no_token(
    database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATON_ADMIN_KEYS", ADMIN_KEY)
    secrets = Secrets()
    log = tmp_path / "server.log"
    with BatonServer(database, log, "--handler", TEST_HANDLER) as server:
        await drive(server.url, secrets)
    text = log.read_text()
    assert "GET /v1/admin/events" in text  # the log is there, with its access lines
    assert len(secrets.seen) >= 6
    leaked = [secret for secret in secrets.seen if secret in text]
    assert leaked == [], f"{len(leaked)} secrets in the log"
    assert "?continuationToken=<redacted>" in text  # where one would have been
