"""Baton inside a Litestar app: `BatonPlugin(BatonConfig(...))`.

    app = Litestar([my_routes], plugins=[BatonPlugin(BatonConfig(handler=my_handler))])

The plugin mounts the protocol's routes under `path` (the turn API, and the audit API with
admin keys), its lifespan (the database, the seal sweeper, the shutdown gate that drains
turns), and, at the root, /healthz, /readyz and /metrics unless told not to. Everything
Baton needs travels on its own routers: its dependencies, its exception handlers (errors
as `{"error", "reason"}`), its authentication middleware and its body-size limit, so the
user's own routes, middleware and error pages are left as they were. `baton serve` is a
user of this plugin too (api/app.py).

`litestar baton ...` runs Baton's operator commands (`replay`, `verify`, `export`, ...) on
the plugin's database.
"""

import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import click
from litestar import Router
from litestar.config.app import AppConfig
from litestar.di import Provide
from litestar.openapi.spec import Components
from litestar.plugins import CLIPluginProtocol, InitPluginProtocol
from litestar.types import ControllerRouterHandler

from baton.api.admin import admin_routes
from baton.api.auth import authentication, openapi_security
from baton.api.errors import EXCEPTION_HANDLERS
from baton.api.handlers import load_handler
from baton.api.health import healthz, metrics_text, readyz
from baton.api.lifespan import Services, baton_lifespan
from baton.api.log_redaction import redact_queries
from baton.api.openapi import publish_turn_input
from baton.api.options import allow_every_method
from baton.api.refusal_limit import identify_clients
from baton.api.rest import SESSION_PATH, continue_session, delete_session, start_session
from baton.api.sessions import cancel_turn, read_session, session_events
from baton.api.web import web_routes
from baton.api.websocket import turns_socket, websockets_disabled
from baton.domain.handler import TurnHandler
from baton.infra.migrate import head_revision
from baton.infra.settings import Settings

VERSION = "0.1.0"


@dataclass(frozen=True, slots=True, kw_only=True)
class BatonConfig:
    """What to mount. Unset fields come from `settings`, and those from BATON_* variables."""

    handler: TurnHandler | str | None = None  # a handler, or "module:attribute"
    database_url: str | None = None
    path: str = "/v1"  # the turn API's prefix: {path}/session, {path}/ws, {path}/admin
    settings: Settings | None = None
    operations: bool = True  # /healthz, /readyz and /metrics at the root
    # Traces with this OpenTelemetry tracer provider (baton[otel]); None: the global one,
    # if one is set when the app is created.
    tracer_provider: Any = None
    web: bool = False  # the chat page at / (baton serve: on with the demo handler)

    def resolved(self) -> Settings:
        settings = self.settings if self.settings is not None else Settings.from_env()
        if self.database_url is not None:
            settings = replace(settings, database_url=self.database_url)
        return settings

    def turn_handler(self, settings: Settings) -> TurnHandler:
        if self.handler is None or isinstance(self.handler, str):
            return load_handler(self.handler or settings.handler)
        return self.handler


class BatonPlugin(InitPluginProtocol, CLIPluginProtocol):
    def __init__(self, config: BatonConfig | None = None) -> None:
        self.config = config if config is not None else BatonConfig()
        if not self.config.path.startswith("/") or self.config.path.endswith("/"):
            raise ValueError(f"BatonConfig.path must start and not end with /: {self.config.path}")

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        settings = self.config.resolved()
        handler = self.config.turn_handler(settings)  # a bad handler fails at start
        services = Services.create(settings, self.config.path, self.config.tracer_provider)
        security = openapi_security(settings)
        own = {
            "dependencies": {
                # A function, not the bound method: Litestar deep-copies a router's
                # dependencies, and a copied method would carry a copy of `services`.
                "turns": Provide(lambda: services.turn_api(), sync_to_thread=False),
                "metrics": Provide(lambda: services.metrics, sync_to_thread=False),
            },
            "exception_handlers": EXCEPTION_HANDLERS,
            "request_max_body_size": settings.max_body_bytes,
        }
        app_config.route_handlers += [
            self._turn_api(settings, services, security.requirement, own),
            *admin_routes(settings.admin_keys, self.config.path),
            *self._operations(own),
            *(web_routes(settings) if self.config.web else []),
        ]
        app_config.lifespan = [*app_config.lifespan, baton_lifespan(settings, handler, services)]
        app_config.state.update(services.state(head_revision()))
        app_config.on_startup = [
            *app_config.on_startup,
            # (An app may have no OpenAPI at all: then there is nothing to publish.)
            lambda app: (
                publish_turn_input(app, handler, self.config.path) if app.openapi_config else None
            ),
            # No token in the server's logs, whichever server runs the app: after it set
            # its logging up (api/log_redaction.py).
            lambda: redact_queries(),
        ]
        if security.schemes:
            _add_security_schemes(app_config, security.schemes)
        return app_config

    def _turn_api(
        self, settings: Settings, services: Services, security: Any, own: dict[str, Any]
    ) -> ControllerRouterHandler:
        websocket_route = turns_socket if settings.websockets else websockets_disabled
        return Router(
            path=self.config.path,
            route_handlers=[
                # First: Litestar's own OPTIONS for this path would miss a method.
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
                *(
                    [identify_clients(lambda: services.limiter())]
                    if settings.refusal_limit is not None
                    else []
                ),
            ],
            security=security,
            **own,
        )

    def _operations(self, own: dict[str, Any]) -> list[ControllerRouterHandler]:
        if not self.config.operations:
            return []
        return [Router(path="/", route_handlers=[healthz, readyz, metrics_text], **own)]

    def on_cli_init(self, cli: click.Group) -> None:
        cli.add_command(_baton_command(self.config.resolved))


def _add_security_schemes(app_config: AppConfig, schemes: dict[str, Any]) -> None:
    """The turn API's bearer scheme, beside the app's own (an app without OpenAPI has none)."""
    config = app_config.openapi_config
    if config is None:
        return
    components = config.components
    if isinstance(components, list):  # Litestar takes one Components or several
        config.components = [*components, Components(security_schemes=schemes)]
    else:
        existing = dict(components.security_schemes or {}) if components else {}
        config.components = replace(
            components or Components(), security_schemes={**existing, **schemes}
        )


def _baton_command(settings: Callable[[], Settings]) -> click.Command:
    @click.command(
        name="baton",
        help="Baton's commands (replay, verify, export, import, prune, history, migrate) on "
        "this app's database; `litestar baton --help` lists them.",
        context_settings={"ignore_unknown_options": True, "help_option_names": []},
    )
    @click.argument("arguments", nargs=-1, type=click.UNPROCESSED)
    def baton(arguments: tuple[str, ...]) -> None:
        from baton.api.cli import main  # the CLI imports the app: not at module import

        given = list(arguments) or ["--help"]
        url = ["--database-url", settings().database_url] if _takes_database(given) else []
        sys.exit(main([*given, *url]))

    return baton


def _takes_database(arguments: list[str]) -> bool:
    """A command that reads the database and was not given one: the plugin's is meant."""
    return (
        arguments[0] not in {"serve", "chat", "--help", "-h"}
        and "--database-url" not in arguments
        and not any(argument in {"--help", "-h"} for argument in arguments)
    )
