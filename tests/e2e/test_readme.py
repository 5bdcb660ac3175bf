"""The README's curl session works as printed, against a real server."""

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.databases import fresh_database
from tests.e2e.server import BatonServer

README = Path(__file__).resolve().parents[2] / "README.md"
pytestmark = pytest.mark.e2e


def try_it_block() -> str:
    section = README.read_text().split("## Try it", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match, "README's 'Try it' section has no sh block"
    return match.group(1)


@pytest.fixture
def database(backend: str, tmp_path: Path) -> Iterator[str]:
    with fresh_database(backend, tmp_path) as url:
        yield url


def test_the_readme_curl_session_runs_as_printed(database: str, tmp_path: Path) -> None:
    with BatonServer(database, tmp_path / "server.log") as server:
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", try_it_block()],
            env={**os.environ, "BATON": server.url},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert '"turn":1' in lines[0]
    assert '"turn":2' in lines[1]
    assert lines[2].endswith(" 409")
    assert "stale-token" in lines[2]
    assert lines[3].endswith(" 500")
    assert "turn-failed" in lines[3]
    assert '"You said: still here"' in lines[4]
    assert '"turn":3' in lines[4]


def readme_block(heading: str, language: str) -> str:
    section = README.read_text().split(heading, 1)[1]
    match = re.search(rf"```{language}\n(.*?)```", section, re.DOTALL)
    assert match, f"README's {heading!r} section has no {language} block"
    return match.group(1)


def test_the_readme_streaming_examples_run_as_printed(database: str, tmp_path: Path) -> None:
    with BatonServer(database, tmp_path / "server.log") as server:
        curl = readme_block("### Streamed turns", "sh").replace("http://127.0.0.1:8787", server.url)
        streamed = subprocess.run(
            ["bash", "-c", curl], capture_output=True, text=True, timeout=60, check=True
        )
        snippet = readme_block("### Streamed turns", "python").replace(
            "ws://127.0.0.1:8787", server.url.replace("http://", "ws://")
        )
        python = Path(sys.executable)
        spoken = subprocess.run(
            [str(python), "-c", snippet], capture_output=True, text=True, timeout=60, check=True
        )
    assert "event: record" in streamed.stdout
    reply = "You said: watch this arrive word by word"
    assert streamed.stdout.count("event: delta") == reply.count(" ") + 1  # one per word
    assert streamed.stdout.rstrip().splitlines()[-1].startswith('data: {"type":"outcome"')
    outcomes = [line for line in spoken.stdout.splitlines() if "'type': 'outcome'" in line]
    assert len(outcomes) == 2
    assert "'turn': 2" in outcomes[1]


def test_the_readme_recovery_recipes_run_as_printed(database: str, tmp_path: Path) -> None:
    """A lost buffered reply recovered three ways: a keyed retry, a read, resumed events."""
    with BatonServer(database, tmp_path / "server.log") as server:
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", readme_block("### Recovering a lost reply", "sh")],
            env={**os.environ, "BATON": server.url},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].lower().startswith("idempotent-replayed: true")
    replayed = json.loads(lines[1])
    assert (replayed["turn"], replayed["output"]["reply"]) == (2, "You said: lost")
    read = json.loads(lines[2])
    assert read["lastOutcome"]["recovered"] is True
    assert read["lastOutcome"]["continuationToken"] == replayed["continuationToken"]
    streamed = "\n".join(lines[3:])
    assert streamed.startswith("id: 3\nretry: ")  # the priming message: where to resume
    assert "event: record" in streamed
    assert replayed["continuationToken"] in streamed.splitlines()[-1]


def test_the_readme_python_client_example_runs_as_printed(database: str, tmp_path: Path) -> None:
    with BatonServer(database, tmp_path / "server.log") as server:
        snippet = readme_block("### From Python", "python").replace(
            "http://127.0.0.1:8787", server.url
        )
        ran = subprocess.run(
            [sys.executable, "-c", snippet],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=tmp_path,  # where its token file goes
        )
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert lines[0] == "{'reply': 'You said: hello', 'turn': 1}"
    assert lines[1] == "You said: watch this arrive"
    assert lines[2] == "turn-failed 500"
    assert lines[3] == "3"
    assert (tmp_path / "session.json").is_file()
