"""The composition root: builds the Litestar app and wires infra into the domain."""

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components

from baton.api.admin import admin_routes
from baton.api.auth import authentication, openapi_security
from baton.api.errors import EXCEPTION_HANDLERS
from baton.api.follow import Following
from baton.api.handlers import input_check, load_handler
from baton.api.health import healthz, metrics_text, readyz
from baton.api.instruments import Instruments, TracerProvider
from baton.api.live import TurnRunner
from baton.api.openapi import publish_turn_input
from baton.api.options import allow_every_method
from baton.api.refusal_limit import RefusalLimiter, identify_clients
from baton.api.rest import SESSION_PATH, continue_session, delete_session, start_session
from baton.api.sessions import cancel_turn, read_session, session_events
from baton.api.shutdown import ShutdownGate
from baton.api.turn_api import TurnApi
from baton.api.web import web_routes
from baton.api.websocket import turns_socket, websockets_disabled
from baton.domain.driver import TurnDriver, TurnServices
from baton.domain.handler import TurnHandler
from baton.domain.ports import StoreUnavailable
from baton.infra.migrate import head_revision
from baton.infra.settings import Settings
from baton.infra.stores import Database, open_database

VERSION = "0.1.0"
log = logging.getLogger("baton.app")


def utc_now() -> datetime:
    return datetime.now(UTC)


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


def _refusal_limiter(settings: Settings, database: Database) -> RefusalLimiter | None:
    if settings.refusal_limit is None or database.spend_refusal is None:
        return None
    return RefusalLimiter(
        database.spend_refusal, settings.refusal_limit, settings.refusal_window, database.clock
    )


def create_app(
    settings: Settings,
    *,
    handler: TurnHandler | None = None,
    tracer_provider: TracerProvider | None = None,  # else OpenTelemetry's global one, if set
) -> Litestar:
    """The app for `settings`. The handler is loaded now so a bad --handler fails at start."""
    turn_handler = handler if handler is not None else load_handler(settings.handler)

    instruments = Instruments(tracer_provider)  # /metrics, and traces (api/instruments.py)
    metrics = instruments.metrics
    runner = TurnRunner(max_turns=settings.max_turns, buffer=settings.stream_buffer)
    gate = ShutdownGate()
    owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"

    @asynccontextmanager
    async def database(app: Litestar) -> AsyncIterator[None]:
        async with open_database(settings, listen=True) as opened:
            services = TurnServices(
                instruments.store(opened),
                instruments.handler(turn_handler),
                opened.clock,  # leases on the database's time (infra/db_clock.py)
                secrets.token_bytes,
                owner=owner,
                lease_seconds=settings.lease,
                turn_timeout=settings.turn_timeout,
                recovery_window=settings.recovery_window,
                check_input=input_check(turn_handler),
            )
            # A cancel asked on another replica stops the turn this one runs at once.
            opened.on_cancel(runner.cancel)
            following = Following(
                opened.store, opened.notifier, opened.follow, opened.clock, opened.poll_seconds
            )
            app.state.reader = opened.reader
            app.state.turns = TurnApi(
                TurnDriver(services),
                runner,
                gate,
                following,
                settings.sse_ping_seconds,
                _refusal_limiter(settings, opened),
                instruments,
            )
            sweeping = asyncio.create_task(_sweep_forever(opened, settings.recovery_window))
            try:
                yield
            finally:
                sweeping.cancel()
                # Turns outlive the requests that started them: give them what is left of
                # the grace period, then cancel (and so release) the rest.
                gate.close()
                await runner.drain(gate.remaining(settings.shutdown_grace))

    def turns(state: State) -> TurnApi:
        ready: TurnApi = state.turns
        return ready

    websocket_route = turns_socket if settings.websockets else websockets_disabled
    # The turn API: the routes that authenticate, when principals are on (api/auth.py).
    security = openapi_security(settings)
    turn_api = Router(
        path="/",
        route_handlers=[
            # First: Litestar's own OPTIONS for this path would miss a method (api/options.py).
            allow_every_method([SESSION_PATH]),
            start_session,
            continue_session,
            delete_session,
            read_session,
            session_events,
            cancel_turn,
            websocket_route,
        ],
        middleware=[
            *authentication(settings),
            # After authentication: a client is its principal when there is one.
            *([identify_clients] if settings.refusal_limit is not None else []),
        ],
        security=security.requirement,
    )
    app = Litestar(
        route_handlers=[
            turn_api,
            healthz,
            readyz,
            metrics_text,
            *admin_routes(settings.admin_keys),  # none without BATON_ADMIN_KEYS: 404
            *web_routes(settings),  # the chat page at /
        ],
        lifespan=[database],
        dependencies={
            "turns": Provide(turns, sync_to_thread=False),
            "metrics": Provide(lambda: metrics, sync_to_thread=False),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Baton",
            version=VERSION,
            path="/schema",
            components=Components(security_schemes=security.schemes),
        ),
        state=State(
            {"metrics": metrics, "head_revision": head_revision(), "gate": gate, "runner": runner}
        ),
    )
    publish_turn_input(app, turn_handler)
    return app
