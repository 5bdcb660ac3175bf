"""`baton serve --workers N`: N server processes on one listening socket.

The supervisor is uvicorn's own (uvicorn.supervisors.Multiprocess): it binds the socket,
spawns the workers, restarts one that dies (kill -9, OOM) and, on SIGINT or SIGTERM, sends
every worker SIGTERM and waits for them. Each worker serves through api/serving.py's
GracefulServer, so each drains its own turns within the grace period, answering new ones
503 with Retry-After meanwhile, exactly as a single process does. What a worker needs from
this process it gets through the environment: the settings as BATON_* variables (flags
included) and, with several workers, PROMETHEUS_MULTIPROC_DIR, a fresh directory for
prometheus_client's per-process files, removed when the supervisor exits.

Each worker builds its own app (api/app.py), so each has its own lease owner id
(host:pid:random), its own database pool and its own listener; the database is what they
share, as separate replicas do. A worker whose supervisor is killed with -9 drains and
stops by itself instead of serving on, orphaned, on the socket it inherited.
"""

import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from socket import socket
from unittest import mock

import uvicorn
from litestar import Litestar
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import multiprocess

from baton.api.app import create_app
from baton.api.log_redaction import redact_queries
from baton.api.serving import exit_cleanly, graceful_server, uvicorn_config
from baton.infra.database import is_sqlite
from baton.infra.settings import Settings, SettingsError

FACTORY = "baton.api.workers:app_from_environment"
METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"
SQLITE_WORKERS = 1
READY_SECONDS = 60.0  # for every worker to start serving, before the supervisor says so


def app_from_environment() -> Litestar:
    """The app, its settings from BATON_* variables: an application factory for any ASGI
    server (`uvicorn --factory baton.api.workers:app_from_environment`)."""
    return create_app(Settings.from_env())


def cores() -> int:
    """The cores this process may run on (a container's share, not the machine's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def worker_count(settings: Settings) -> int:
    """How many processes serve: --workers / BATON_WORKERS, else one per core on
    PostgreSQL and one on SQLite (README, Workers)."""
    if not is_sqlite(settings.database_url):
        return settings.workers or cores()
    if settings.workers is not None and settings.workers > SQLITE_WORKERS:
        raise SettingsError(
            f"--workers {settings.workers} on SQLite: one SQLite file has one writer at a "
            f"time, so more processes only queue on its lock; serve SQLite with "
            f"--workers {SQLITE_WORKERS}, or use PostgreSQL for more"
        )
    return SQLITE_WORKERS


class GracefulWorker(multiprocess.Process):
    """uvicorn's worker process, serving through GracefulServer instead of uvicorn.Server."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket]) -> None:
        super().__init__(config, sockets)
        self.supervisor = os.getpid()  # built in the supervisor: the process it must not outlive

    def target(self, sockets: list[socket] | None = None) -> None:  # pragma: no cover
        # In the worker, a process of its own (spawned): build the app here, from the
        # environment the supervisor prepared, before uvicorn's health checks ask for it.
        signal.signal(signal.SIGTERM, exit_cleanly)
        redact_queries()
        try:
            settings = Settings.from_env()
            app = create_app(settings)
        except Exception as error:  # whatever it is, restarting will not help
            print(f"baton: error: worker {os.getpid()}: {error}", file=sys.stderr)
            sys.exit(STARTUP_FAILURE)  # the supervisor stops instead of restarting it
        self.config.app, self.config.factory = app, False
        # A supervisor killed with -9 cannot stop its workers: each then drains and stops
        # by itself, rather than serve on, orphaned, on the socket it inherited.
        orphaned = lambda: os.getppid() != self.supervisor  # noqa: E731
        self._server = graceful_server(self.config, app, settings, orphaned)
        super().target(sockets)


class Supervisor(multiprocess.Multiprocess):
    """uvicorn's supervisor, which also says when every worker serves: the listening socket
    answers as soon as the first one does."""

    def init_processes(self) -> None:
        super().init_processes()
        deadline = time.monotonic() + READY_SECONDS
        for worker in self.processes:
            left = max(0.0, deadline - time.monotonic())
            if not worker.wait_until_ready(left, self.should_exit):
                return  # it failed (the supervisor's loop sees to it), or we are stopping
        print(f"baton: {len(self.processes)} workers ready", file=sys.stderr, flush=True)


@contextmanager
def _metrics_directory() -> Iterator[None]:
    """A fresh PROMETHEUS_MULTIPROC_DIR for the workers, removed at exit: a directory left
    by an earlier run would add its counts to this one's."""
    directory = tempfile.mkdtemp(prefix="baton-metrics-")
    previous = os.environ.get(METRICS_DIR)
    os.environ[METRICS_DIR] = directory
    try:
        yield
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        if previous is None:
            os.environ.pop(METRICS_DIR, None)
        else:
            os.environ[METRICS_DIR] = previous


def run_workers(settings: Settings, count: int) -> None:
    """Serve with `count` worker processes under uvicorn's supervisor until it is stopped."""
    config = uvicorn_config(FACTORY, settings, factory=True, workers=count)
    redact_queries()
    os.environ.update(settings.as_environment())  # spawned workers inherit it
    with _metrics_directory():
        listening = config.bind_socket()
        # uvicorn's supervisor builds (and rebuilds) its workers from this module global.
        with mock.patch.object(multiprocess, "Process", GracefulWorker):
            Supervisor(config, sockets=[listening]).run()
