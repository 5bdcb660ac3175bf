"""A client process killed with -9 and started again: the token file carries its session on,
between turns and even in the middle of one."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.client.conftest import committed_turns
from tests.e2e.server import ROOT, BatonServer
from tests.waiting import until

pytestmark = pytest.mark.e2e


class ClientProcess:
    def __init__(self, server: BatonServer, state: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.client.crash_script", server.url, str(state)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def send(self, input: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(input) + "\n")
        self.process.stdin.flush()

    def turn(self, input: dict[str, Any]) -> dict[str, Any]:
        self.send(input)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, "the client process died"
        reply: dict[str, Any] = json.loads(line)
        return reply

    def kill_9(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()


def saved(state: Path) -> dict[str, str]:
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o600
    data: dict[str, str] = json.loads(state.read_text())
    return data


async def test_a_client_killed_with_9_continues_its_session(
    server: BatonServer, tmp_path: Path
) -> None:
    state = tmp_path / "session.json"
    first = ClientProcess(server, state)
    assert first.turn({"quick": "one"})["turn"] == 1
    session_id = first.turn({"quick": "two"})["sessionId"]
    first.kill_9()  # between turns
    assert set(saved(state)) == {"sessionId", "continuationToken"}

    second = ClientProcess(server, state)
    assert second.turn({"quick": "three"}) == {
        "sessionId": session_id,
        "turn": 3,
        "replayed": False,
    }
    token = saved(state)["continuationToken"]
    slow = {"message": "/sleep", "seconds": 0.5}
    second.send(slow)

    async def running() -> bool:
        async with httpx.AsyncClient(base_url=server.url) as http:
            view = await http.get(
                f"/v1/session/{session_id}", headers={"X-Continuation-Token": token}
            )
        return bool(view.json()["status"] == "in-flight")

    await until(running, "the turn runs")
    second.kill_9()  # in the middle of a turn: its key is in the file
    assert set(saved(state)) == {
        "sessionId",
        "continuationToken",
        "pendingKey",
        "pendingFingerprint",
    }

    third = ClientProcess(server, state)  # the same input again: the server's reply, replayed
    assert third.turn(slow) == {"sessionId": session_id, "turn": 4, "replayed": True}
    assert third.turn({"quick": "five"})["turn"] == 5
    third.kill_9()
    assert await committed_turns(server.database_url, session_id) == [1, 2, 3, 4, 5]
