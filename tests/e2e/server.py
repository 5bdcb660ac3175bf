"""A real `baton serve` process for end-to-end tests: start it, kill -9 it, read its log."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

BATON = Path(sys.executable).with_name("baton")  # the console script of this venv
ROOT = Path(__file__).resolve().parents[2]
STARTUP_SECONDS = 30
TEST_HANDLER = "tests.handlers:test_handler"  # the demo, plus turns a test can hold


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class BatonServer:
    def __init__(
        self,
        database_url: str,
        log_path: Path,
        *extra_args: str,
        wrapper: tuple[str, ...] = (),
        program: tuple[str, ...] = (str(BATON), "serve"),
        environ: dict[str, str] | None = None,
    ) -> None:
        self.database_url = database_url
        self.environ = environ or {}  # BATON_* settings besides the database URL
        self.log_path = log_path
        # One process unless a test asks for workers: kill -9 and SIGSTOP of a replica must
        # reach all of it (PostgreSQL's default is one worker per core).
        serve = program == (str(BATON), "serve")
        self.extra_args = (
            ("--workers", "1", *extra_args)
            if serve and "--workers" not in extra_args
            else extra_args
        )
        self.wrapper = wrapper  # a command the server runs under (faketime, say)
        self.program = program  # `baton serve`, or an app of a user's (tests/plugin_app.py)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "BatonServer":
        command = [
            *self.program,
            "--port",
            str(self.port),
            "--database-url",
            self.database_url,
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*self.wrapper, *command, *self.extra_args],
                stdout=log,
                stderr=subprocess.STDOUT,
                # The repository on the path, so --handler can name a module under tests/.
                env={
                    **os.environ,
                    **self.environ,
                    "PYTHONUNBUFFERED": "1",
                    "PYTHONPATH": str(ROOT),
                },
                # A wrapper (faketime) forks the server and passes no signal on: the server
                # gets a process group of its own, and every signal goes to the group.
                start_new_session=bool(self.wrapper),
            )
        self._wait_until_healthy()
        return self

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{' '.join(self.program)} exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"baton serve did not come up:\n{self.log()}")

    def kill(self) -> None:
        """kill -9: no shutdown hooks, no flushing, as a crash or an OOM kill would."""
        if self.process is not None and self.process.poll() is None:
            self._signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.wrapper and self.process is not None:
            self._reap_wrapped(self.process.pid)

    def _signal(self, signum: int) -> None:
        assert self.process is not None  # only a started server is signalled
        if self.wrapper:
            os.killpg(self.process.pid, signum)
        else:
            self.process.send_signal(signum)

    def _reap_wrapped(self, group: int) -> None:
        """The wrapper is gone; its server, shutting down on its own, closes its port within
        the grace, or the group is killed."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self._answers():
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)

    def _answers(self) -> bool:
        try:
            httpx.get(f"{self.url}/healthz", timeout=1)
        except httpx.TransportError:
            return False
        return True

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> "BatonServer":
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
