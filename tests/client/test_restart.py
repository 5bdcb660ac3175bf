"""baton-client while its server goes away: 503s from a draining server, a server that is
down and then restarted, a stream cut by kill -9, and `baton chat` in a pseudo-terminal
across a restart."""

import asyncio
import io
import json
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pexpect
import pytest
from baton_client import AsyncClient, Client, Outcome, Record, RetryPolicy

from tests.client.conftest import CLIENT_HANDLER, committed_turns
from tests.databases import fresh_database
from tests.e2e.server import BATON, BatonServer

pytestmark = pytest.mark.e2e

PATIENT = RetryPolicy(
    max_attempts=200, deadline=40, base_delay=0.05, max_delay=0.3, resume_idle=0.5
)


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


# The chat as a user sees it, through a pseudo-terminal: rich styles what it prints, so
# a style's escape sequence may come between any two characters of the text.
STYLE = r"(?:\x1b\[[0-9;]*m)*"
# A long message: its reply streams word by word for about half a second (the demo handler
# pauses 20 ms between words), long enough to see it arrive before it ends.
WORDS = " ".join(f"w{n}" for n in range(1, 26))


def shown(text: str) -> str:
    """A pattern matching `text` as the terminal shows it."""
    return STYLE.join(re.escape(char) for char in text)


# How the chat shows a turn that failed: the error's reason in red.
FAILED = r"\x1b\[31m[a-z-]+"


def expect_ending(chat: pexpect.spawn, text: str, turn: int) -> None:
    """Wait for the end of a reply, `text`, then the turn it was; fail at once on an error."""
    ending = shown(text) + rf"\s*{STYLE}" + shown(f"(turn {turn})")
    if chat.expect([ending, FAILED]) == 1:
        reason = chat.after
        chat.expect(shown("you "))
        error = re.sub(STYLE, "", f"{reason}{chat.before}").strip()
        raise AssertionError(f"the turn failed: {error}")


def chat_turn(chat: pexpect.spawn, message: str, turn: int) -> None:
    """Type a message; see its reply begin before its end has come (it streams), then end."""
    chat.expect(shown("you "))
    chat.sendline(f"{message} {WORDS}")
    first, rest = WORDS.split(" ", 1)
    chat.expect(shown(f"You said: {message} {first} "))
    last = WORDS.rsplit(" ", 1)[1]
    assert last not in chat.buffer, f"the reply did not stream, it came whole: {chat.buffer!r}"
    expect_ending(chat, rest, turn)


def spawn_chat(url: str, state: Path, *options: str) -> pexpect.spawn:
    chat = pexpect.spawn(
        str(BATON),
        ["chat", url, "--state", str(state), *options],
        encoding="utf-8",
        timeout=30,  # a guard: every expect below normally returns within a second or two
        dimensions=(24, 400),  # no wrapping of the long replies
        env={**os.environ, "TERM": "xterm-256color"},
    )
    chat.logfile_read = io.StringIO()  # the whole screen, for a failure's message
    return chat


def test_the_chat_survives_a_restart_and_resumes(backend: str, tmp_path: Path) -> None:
    """`baton chat` in a pseudo-terminal against the demo handler: two streamed turns, the
    server killed -9 and restarted on the same database while the third is typed, the
    third answered on the same session, then /quit, and `--resume` for a fourth."""
    # Longer than the terminal is wide: the path must still print whole, to be copied.
    folder = tmp_path / ("a-folder-with-a-long-name-" * 8) / ("and-another-" * 16)
    folder.mkdir(parents=True)
    state = folder / "chat.json"
    with (
        fresh_database(backend, tmp_path) as url,
        BatonServer(url, tmp_path / "server.log") as server,  # the demo handler
    ):
        chat = spawn_chat(server.url, state)
        try:
            chat.expect(shown("a new conversation"))
            chat_turn(chat, "hello there", 1)
            chat_turn(chat, "still here", 2)
            session_id = json.loads(state.read_text())["sessionId"]
            server.kill()
            chat.expect(shown("you "))
            chat.sendline(f"after the crash {WORDS}")
            chat.expect(shown("baton "))  # the turn is under way, against a dead server...
            server.start()  # ...which comes back on the same database
            expect_ending(chat, f"You said: after the crash {WORDS}", 3)
            chat.expect(shown("you "))
            chat.sendline("/quit")
            chat.expect(shown(f"saved in {state}; carry on with --resume"))
            chat.expect(pexpect.EOF)
        finally:
            chat.close(force=True)
        assert chat.exitstatus == 0, chat.logfile_read.getvalue()

        resumed = spawn_chat(server.url, state, "--resume")
        try:
            resumed.expect(shown(f"session {session_id} (from {state})"))
            chat_turn(resumed, "and again", 4)
            resumed.expect(shown("you "))
            resumed.sendeof()  # Ctrl-D leaves too
            resumed.expect(shown("carry on with --resume"))
            resumed.expect(pexpect.EOF)
        finally:
            resumed.close(force=True)
        assert resumed.exitstatus == 0, resumed.logfile_read.getvalue()
        assert json.loads(state.read_text())["sessionId"] == session_id
        assert asyncio.run(committed_turns(url, session_id)) == [1, 2, 3, 4]
