"""The README's curl session works as printed, against a real server."""

import os
import re
import subprocess
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
