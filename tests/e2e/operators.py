"""Helpers for driving the `baton` operator commands as processes."""

import subprocess
from pathlib import Path

from tests.e2e.server import BATON

TIMEOUT = 120


def baton(*args: str, database: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BATON), *args, "--database-url", database],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        cwd=cwd,
    )
