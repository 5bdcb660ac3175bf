"""A session survives kill -9 of its server: real processes, a real database on disk."""

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


def turn(server: BatonServer, session_id: str, token: str, message: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/session/{session_id}/message",
        json={"message": message, "continuationToken": token},
        timeout=10,
    )


def test_a_session_resumes_after_kill_9(database: str, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    first = BatonServer(database, log).start()
    try:
        started = httpx.post(f"{first.url}/v1/session", json={"message": "one"}, timeout=10).json()
        session_id, tokens = started["sessionId"], [started["continuationToken"]]
        for message in ("two", "three"):
            reply = turn(first, session_id, tokens[-1], message)
            assert reply.status_code == 200, reply.text
            tokens.append(reply.json()["continuationToken"])
    finally:
        first.kill()

    with BatonServer(database, log) as second:
        replayed = turn(second, session_id, tokens[-2], "replayed")
        assert (replayed.status_code, replayed.json()["reason"]) == (409, "stale-token")
        resumed = turn(second, session_id, tokens[-1], "four")
        assert resumed.status_code == 200, resumed.text
        assert resumed.json()["turn"] == 4
        assert resumed.json()["output"] == {"reply": "You said: four", "turn": 4}
        tokens.append(resumed.json()["continuationToken"])

    server_log = log.read_text()
    assert "/v1/session" in server_log  # the access log was captured...
    for token in tokens:
        assert token not in server_log  # ...and carries no token


def test_oversized_and_malformed_requests_over_a_real_socket(database: str, tmp_path: Path) -> None:
    with BatonServer(database, tmp_path / "server.log") as server:
        huge_body = httpx.post(
            f"{server.url}/v1/session", json={"message": "x" * (8 * 1024 * 1024)}, timeout=30
        )
        assert (huge_body.status_code, huge_body.json()["reason"]) == (413, "too-large")
        huge_id = httpx.post(
            f"{server.url}/v1/session/{'s' * 10_000}/message",
            json={"message": "m", "continuationToken": "t"},
            timeout=10,
        )
        assert (huge_id.status_code, huge_id.json()["reason"]) == (404, "unknown-session")
        not_json = httpx.post(f"{server.url}/v1/session", content=b"{nope", timeout=10)
        assert (not_json.status_code, not_json.json()["reason"]) == (400, "bad-request")
        assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200
