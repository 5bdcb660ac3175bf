"""The standalone app `baton serve` runs: Baton's plugin (api/plugin.py) on an app of its
own, whose every answer (a 404 for an unknown path included) is Baton's error shape."""

from litestar import Litestar
from litestar.openapi import OpenAPIConfig

from baton.api.errors import EXCEPTION_HANDLERS
from baton.api.instruments import TracerProvider
from baton.api.plugin import VERSION, BatonConfig, BatonPlugin
from baton.api.web import serves_web
from baton.domain.handler import TurnHandler
from baton.infra.settings import Settings

__all__ = ["VERSION", "create_app"]


def create_app(
    settings: Settings,
    *,
    handler: TurnHandler | None = None,
    tracer_provider: TracerProvider | None = None,  # else OpenTelemetry's global one, if set
) -> Litestar:
    """The app for `settings`. The handler is loaded now so a bad --handler fails at start."""
    config = BatonConfig(
        handler=handler,
        settings=settings,
        web=serves_web(settings),
        tracer_provider=tracer_provider,
    )
    return Litestar(
        plugins=[BatonPlugin(config)],
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(title="Baton", version=VERSION, path="/schema"),
    )
