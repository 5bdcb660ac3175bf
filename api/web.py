"""The chat page at `/`: one static page and the JavaScript client (an ES module, usable on
its own), served from api/static by Litestar's static files router. No build step and no
CDN: everything the page loads comes from this server.

On by default with the demo handler, whose input ({"message": text}) the page speaks; off
by default with any other handler, whose input it cannot know (`--web` turns it on).
"""

from pathlib import Path

from litestar.router import Router
from litestar.static_files import create_static_files_router

from baton.api.handlers import BUILT_IN
from baton.infra.settings import Settings

STATIC = Path(__file__).parent / "static"


def serves_web(settings: Settings) -> bool:
    if settings.web is not None:
        return settings.web
    return BUILT_IN.get(settings.handler, settings.handler) == BUILT_IN["demo"]


def web_routes(settings: Settings) -> list[Router]:
    if not serves_web(settings):
        return []
    # html_mode: `/` answers index.html. The API's own routes are more specific and win.
    page = create_static_files_router(
        path="/", directories=[STATIC], html_mode=True, include_in_schema=False, name="web"
    )
    return [page]
