"""baton-client while its server goes away: 503s from a draining server, a server that is
down and then restarted, a stream cut by kill -9, and the chat across a restart."""

import asyncio
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest
from baton_client import AsyncClient, Client, Outcome, Record, RetryPolicy

from tests.client.conftest import CLIENT_HANDLER, committed_turns
from tests.databases import fresh_database
from tests.e2e.server import BatonServer

pytestmark = pytest.mark.e2e

PATIENT = RetryPolicy(
    max_attempts=200, deadline=40, base_delay=0.05, max_delay=0.3, resume_idle=0.5
)
CHAT = Path(sys.executable).with_name("baton-chat")


@pytest.fixture(scope="module")
def server(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BatonServer]:
    """A server of this module's own, since its tests stop it; a short lease, so a turn whose
    server was killed is taken over a second later."""
    directory = tmp_path_factory.mktemp(f"restart-{backend}")
    with fresh_database(backend, directory) as url:
        log = directory / "server.log"
        with BatonServer(url, log, "--handler", CLIENT_HANDLER, "--lease", "1") as running:
            yield running


def wait_until(condition: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_turn_retries_through_503_and_a_restart(server: BatonServer, tmp_path: Path) -> None:
    with Client(server.url, retry=PATIENT) as client:
        session = client.start({"quick": "one"})
        other = client.start({"quick": "other"})
        flag = tmp_path / "release"
        # A held turn keeps the server draining after SIGTERM: it answers new turns 503.
        held = threading.Thread(target=other.send, args=({"message": "/hold", "until": str(flag)},))
        held.start()
        wait_until(lambda: other.read().status == "in-flight")
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        outcomes: list[Outcome] = []
        sender = threading.Thread(target=lambda: outcomes.append(session.send({"quick": "two"})))
        sender.start()
        wait_until(lambda: client.stats.retry_causes["503"] > 0)
        flag.touch()  # the held turn ends, the server exits, and is down until restarted
        server.process.wait(timeout=30)
        wait_until(lambda: client.stats.retry_causes["ConnectError"] > 0)
        server.start()
        sender.join(timeout=30)
        held.join(timeout=30)
        assert [outcome.turn for outcome in outcomes] == [2]
        print(f"client recovery: {client.stats.as_dict()}")
    assert asyncio.run(committed_turns(server.database_url, str(session.session_id))) == [1, 2]


async def test_a_stream_cut_by_kill_9_finishes_after_the_restart(server: BatonServer) -> None:
    async with AsyncClient(server.url, retry=PATIENT) as client:
        session = await client.start({"quick": "one"})
        events = []
        async for event in session.stream({"message": "/sleep", "seconds": 1.0}):
            events.append(event)
            if len(events) == 1:
                await asyncio.to_thread(server.kill)
                await asyncio.to_thread(server.start)
        outcome = events[-1]
        assert isinstance(outcome, Outcome)
        assert (outcome.turn, outcome.output) == (2, {"slept": 1.0})
        # The killed attempt's record came live; the attempt that committed journalled again.
        assert [type(event) for event in events] == [Record, Record, Outcome]
        assert outcome.records == ({"sleeping": 1.0},)
        # The resumed stream ends with `unavailable` once the dead replica's lease lapses
        # (counted with the 503s); a stream silent for resume_idle first counts as stalled.
        causes = client.stats.retry_causes
        assert causes["503"] + causes["stalled-stream"] >= 1, causes
        assert (await session.send({"quick": "three"})).turn == 3
    turns = await committed_turns(server.database_url, str(session.session_id))
    assert turns == [1, 2, 3]


def test_the_chat_survives_a_restart_and_resumes(server: BatonServer, tmp_path: Path) -> None:
    state = tmp_path / "chat.json"
    chat = subprocess.Popen(
        [str(CHAT), server.url, "--state", str(state)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert chat.stdin is not None
    assert chat.stdout is not None
    chat.stdin.write("hello there\n")
    chat.stdin.flush()
    assert "You said: hello there  (turn 1)" in read_until(chat.stdout, "(turn 1)")
    server.kill()
    chat.stdin.write("still there?\n")
    chat.stdin.flush()
    time.sleep(0.3)  # the chat retries against a dead server...
    server.start()  # ...which comes back
    assert "You said: still there?  (turn 2)" in read_until(chat.stdout, "(turn 2)")
    chat.stdin.close()
    assert chat.wait(timeout=30) == 0
    chat.stdout.close()

    resumed = subprocess.run(
        [str(CHAT), server.url, "--state", str(state), "--resume"],
        input="and again\n",
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "You said: and again  (turn 3)" in resumed.stdout


def read_until(stream: IO[str], marker: str) -> str:
    seen = ""
    while marker not in seen:
        line = stream.readline()
        assert line, f"the chat ended before {marker!r}: {seen}"
        seen += line
    return seen
