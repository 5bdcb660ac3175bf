"""What a Baton app holds while it runs, and its lifespan: the database opened, the turn API
wired to it, seals swept, and on the way out the shutdown gate closed and turns drained."""

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from litestar import Litestar

from baton.api.follow import Following
from baton.api.handlers import input_check
from baton.api.instruments import Instruments, TracerProvider
from baton.api.live import TurnRunner
from baton.api.metrics import Metrics
from baton.api.refusal_limit import RefusalLimiter
from baton.api.shutdown import ShutdownGate
from baton.api.turn_api import TurnApi
from baton.domain.driver import TurnDriver, TurnServices
from baton.domain.handler import TurnHandler
from baton.domain.ports import StoreUnavailable
from baton.infra.settings import Settings
from baton.infra.stores import Database, open_database

log = logging.getLogger("baton.app")


@dataclass(slots=True)
class Services:
    """The parts that exist from the app's creation; the turn API joins them once the
    database is open (the lifespan), and is what every transport's `turns` dependency is."""

    instruments: Instruments  # /metrics, and traces (api/instruments.py)
    runner: TurnRunner
    gate: ShutdownGate
    prefix: str
    owner: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
    )
    api: TurnApi | None = None

    @classmethod
    def create(
        cls, settings: Settings, prefix: str, tracer_provider: TracerProvider | None = None
    ) -> "Services":
        runner = TurnRunner(max_turns=settings.max_turns, buffer=settings.stream_buffer)
        return cls(Instruments(tracer_provider), runner, ShutdownGate(), prefix)

    @property
    def metrics(self) -> Metrics:
        return self.instruments.metrics

    def turn_api(self) -> TurnApi:
        if self.api is None:
            raise RuntimeError("the turn API is used before the app's lifespan opened it")
        return self.api

    def limiter(self) -> RefusalLimiter | None:
        """The refusal limiter, once the database is open (before: nobody is blocked)."""
        return self.api.limiter if self.api is not None else None

    def state(self, head_revision: str) -> dict[str, Any]:
        """What the operations routes and the error handlers find in the app's state."""
        return {
            "metrics": self.metrics,
            "head_revision": head_revision,
            "gate": self.gate,
            "runner": self.runner,
        }


def baton_lifespan(
    settings: Settings, handler: TurnHandler, services: Services
) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def database(app: Litestar) -> AsyncIterator[None]:
        async with open_database(settings, listen=True) as opened:
            driver = TurnDriver(
                TurnServices(
                    services.instruments.store(opened),
                    services.instruments.handler(handler),
                    opened.clock,  # leases on the database's time (infra/db_clock.py)
                    secrets.token_bytes,
                    owner=services.owner,
                    lease_seconds=settings.lease,
                    turn_timeout=settings.turn_timeout,
                    recovery_window=settings.recovery_window,
                    check_input=input_check(handler),
                )
            )
            # A cancel asked on another replica stops the turn this one runs at once.
            opened.on_cancel(services.runner.cancel)
            following = Following(
                opened.store, opened.notifier, opened.follow, opened.clock, opened.poll_seconds
            )
            app.state.reader = opened.reader
            services.api = TurnApi(
                driver,
                services.runner,
                services.gate,
                following,
                ping_seconds=settings.sse_ping_seconds,
                limiter=_refusal_limiter(settings, opened, services.gate),
                instruments=services.instruments,
                prefix=services.prefix,
                max_frame_bytes=settings.max_body_bytes,
            )
            sweeping = asyncio.create_task(_sweep_forever(opened, settings.recovery_window))
            try:
                yield
            finally:
                sweeping.cancel()
                # Turns outlive the requests that started them: give them what is left of
                # the grace period, then cancel (and so release) the rest.
                services.gate.close()
                await services.runner.drain(services.gate.remaining(settings.shutdown_grace))

    return database


async def _sweep_forever(database: Database, window: float) -> None:
    """Erase seals past their recovery window, every so often (a read checks the window
    too, so this only keeps the table small and the erasure prompt)."""
    pause = min(max(window / 2, 0.5), 60.0)
    while True:
        await asyncio.sleep(pause)
        try:
            await database.sweep(database.clock())
        except StoreUnavailable as error:
            log.warning("sweeping expired seals: %s", error)


def _refusal_limiter(
    settings: Settings, database: Database, gate: ShutdownGate
) -> RefusalLimiter | None:
    if settings.refusal_limit is None or database.spend_refusal is None:
        return None
    return RefusalLimiter(
        database.spend_refusal,
        settings.refusal_limit,
        settings.refusal_window,
        database.clock,
        pace=settings.refusal_pace,
        gate=gate,  # a held 429 is let go when shutdown begins
    )
