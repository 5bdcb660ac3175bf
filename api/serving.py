"""Serving an app with uvicorn, and stopping it gracefully.

On SIGTERM a replica closes its gate at once (new turns get 503 with Retry-After, /readyz
turns 503) but keeps its listener open while its turns run, for at most the grace period:
a load balancer that polls /readyz can only see it turn 503 if the replica still answers,
and requests already on their way get a 503 that says "retry elsewhere" instead of a
refused connection. Once no turn runs, or the grace period is over and what still runs is
cancelled (and so released, its stream ending with an error event, not cut), uvicorn shuts
down as usual: it stops accepting and waits for the open responses to finish.
"""

import math
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any, Protocol

import uvicorn
from litestar import Litestar

from baton.api.log_redaction import redact_queries
from baton.api.shutdown import ShutdownGate
from baton.infra.settings import Settings


class Turns(Protocol):
    """The turns this replica runs (api.live.TurnRunner)."""

    def __len__(self) -> int: ...

    async def drain(self, grace_seconds: float) -> None: ...


class GracefulServer(uvicorn.Server):
    def __init__(
        self,
        config: uvicorn.Config,
        gate: ShutdownGate | None,
        running: Turns | None,
        grace_seconds: float,
        orphaned: Callable[[], bool] | None = None,
    ) -> None:
        super().__init__(config)
        self._gate = gate
        self._running = running
        self._grace = grace_seconds
        self._orphaned = orphaned  # a worker whose supervisor died stops as if told to

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._gate is not None:
            self._gate.close()
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if not self.should_exit and self._orphaned is not None and self._orphaned():
            self.handle_exit(signal.SIGTERM, None)
        stop = await super().on_tick(counter)
        if not stop or self.force_exit or self._gate is None:
            return stop
        # A blocked client's held 429s go out now, not at their slots (api/refusal_limit.py):
        # here, in the event loop, since handle_exit runs in a signal handler.
        self._gate.let_go()
        remaining = self._gate.remaining(self._grace)
        if self._running is not None and len(self._running):
            if remaining > 0:
                return False  # still draining: keep answering 503s and /readyz
            # Cancel now, while the turns' streams are still open to carry their ends:
            # uvicorn would cancel the responses first, cutting them mid-body.
            await self._running.drain(0)
        # What is left of the grace period is all uvicorn may wait for open responses.
        self.config.timeout_graceful_shutdown = max(1, math.ceil(remaining))
        return True


def exit_cleanly(signum: int, frame: FrameType | None) -> None:
    """Once it has shut down gracefully, uvicorn raises the signal it caught again, for the
    handler it found; a stop that went well should end the process with status 0."""
    raise SystemExit(0)


def uvicorn_config(app: Litestar | str, settings: Settings, **options: Any) -> uvicorn.Config:
    """uvicorn's configuration for `settings`: of the app itself, or (with several
    workers, api/workers.py) of the import string of its factory."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # Without WebSockets, an upgrade request reaches the app as plain HTTP and gets 426.
        ws="auto" if settings.websockets else "none",
        ws_max_size=settings.max_body_bytes,  # a larger frame closes the socket with 1009
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace),
        **options,
    )


def graceful_server(
    config: uvicorn.Config,
    app: Litestar,
    settings: Settings,
    orphaned: Callable[[], bool] | None = None,
) -> GracefulServer:
    """A server that drains `app`'s turns through its gate (api/app.py) on SIGTERM."""
    gate = getattr(app.state, "gate", None)
    running = getattr(app.state, "runner", None)
    return GracefulServer(config, gate, running, settings.shutdown_grace, orphaned)


def run_server(app: Litestar, settings: Settings) -> None:
    """Serve `app` the way `baton serve` does; benchmarks serve their baselines through this
    too, so a comparison differs only in the app."""
    config = uvicorn_config(app, settings)
    redact_queries()  # after uvicorn configured its logging, before it logs anything
    signal.signal(signal.SIGTERM, exit_cleanly)
    graceful_server(config, app, settings).run()
