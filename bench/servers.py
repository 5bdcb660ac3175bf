"""Server processes under test: `baton serve`, the http-floor app, and `baton serve` under
pyinstrument. Each is started, polled until /healthz answers, measured (peak RSS) and stopped
with SIGINT, which uvicorn turns into a graceful shutdown (and pyinstrument into a profile)."""

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from bench.config import ROOT, SERVER_LOG_LEVEL

PYTHON = sys.executable
BATON = str(Path(PYTHON).with_name("baton"))  # this venv's console script
HOST = "127.0.0.1"
STARTUP_SECONDS = 60.0
STOP_SECONDS = 60.0  # pyinstrument writes its session on exit; give it time


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _healthy(port: int) -> bool:
    connection = http.client.HTTPConnection(HOST, port, timeout=1)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


class ServerProcess:
    def __init__(
        self,
        label: str,
        command: list[str],
        port: int,
        log_dir: Path,
        env: dict[str, str] | None = None,
        ready_line: str | None = None,
        startup_seconds: float = STARTUP_SECONDS,
    ) -> None:
        self.label = label
        self.startup_seconds = startup_seconds  # longer under valgrind (bench/instructions.py)
        # With workers, the socket answers once the first one serves; this line in the log
        # says they all do.
        self.ready_line = ready_line
        self.command = command
        self.port = port
        self.env = env or {}  # on top of the benchmark's own environment (BATON_* settings)
        self.log_path = log_dir / f"{label}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "ServerProcess":
        env = {
            **os.environ,
            "BATON_LOG_LEVEL": SERVER_LOG_LEVEL,
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(ROOT),  # so `-m bench.floor_app` imports from the repository
            **self.env,
        }
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:  # one log per label per run
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT
            )
        deadline = time.monotonic() + self.startup_seconds
        while not _healthy(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.label} exited early:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"{self.label} did not come up:\n{self.log_tail()}")
            time.sleep(0.05)
        while self.ready_line is not None and self.ready_line not in self.log_tail():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"{self.label}: not every worker came up:\n{self.log_tail()}")
            time.sleep(0.05)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def peak_rss_bytes(self) -> int:
        """VmHWM: the most resident memory this process has had so far."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # reported in kB
        raise RuntimeError("no VmHWM in /proc/<pid>/status")

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()  # only our own child, by its pid
            process.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def baton_serve_args(database_url: str, port: int, workers: int = 1) -> list[str]:
    """One worker unless asked: the rows compare one server process with the baselines
    (PostgreSQL's default would be one per core)."""
    return [
        "serve",
        *("--handler", "bench", "--database-url", database_url),
        *("--port", str(port), "--workers", str(workers)),
    ]


def baton_server(
    database_url: str,
    log_dir: Path,
    label: str,
    env: dict[str, str] | None = None,
    workers: int = 1,
) -> ServerProcess:
    """`baton serve --handler bench`; `env` adds settings (BATON_REFUSAL_LIMIT, ...)."""
    port = free_port()
    command = [BATON, *baton_serve_args(database_url, port, workers)]
    ready = f"baton: {workers} workers ready" if workers > 1 else None
    return ServerProcess(label, command, port, log_dir, env, ready)


def floor_server(log_dir: Path) -> ServerProcess:
    port = free_port()
    return ServerProcess("http-floor", floor_command(port), port, log_dir)


def floor_command(port: int) -> list[str]:
    """The http-floor app on `port`, as every measurement of it starts it."""
    return [PYTHON, "-m", "bench.floor_app", "--port", str(port)]


def profiled_baton_server(database_url: str, session_path: Path, log_dir: Path) -> ServerProcess:
    """`baton serve` under pyinstrument, saving its raw session for rendering afterwards."""
    port = free_port()
    command = [
        PYTHON,
        "-m",
        "pyinstrument",
        "--renderer",
        "pyisession",
        "--outfile",
        str(session_path),
        "-m",
        "baton.api.cli",
        *baton_serve_args(database_url, port),
    ]
    return ServerProcess("baton-profiled", command, port, log_dir)
