"""A user's own Litestar app with Baton mounted by its plugin: its own route, its own
middleware and its own 404 page, next to the protocol's routes. The conformance suite runs
against it as against `baton serve` (tests/conformance/conftest.py).

    python -m tests.plugin_app --port N --database-url URL [--handler module:attribute]
"""

import argparse
from typing import Any

import uvicorn
from litestar import Litestar, Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from baton.api.plugin import BatonConfig, BatonPlugin

USER_HEADER = "x-user-middleware"


@get("/hello")
async def hello() -> dict[str, str]:
    return {"hello": "from the user's own route"}


def stamp(app: ASGIApp) -> ASGIApp:
    """The user's middleware: it marks every HTTP answer, Baton's included."""

    async def stamped(scope: Scope, receive: Receive, send: Send) -> None:
        async def marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (USER_HEADER.encode(), b"1")]
            await send(message)

        await app(scope, receive, marked)

    return stamped


def user_not_found(request: Request[Any, Any, Any], error: NotFoundException) -> Response[str]:
    return Response("the user's own 404 page", status_code=404)


def create(database_url: str, handler: str) -> Litestar:
    return Litestar(
        route_handlers=[hello],
        middleware=[stamp],
        exception_handlers={NotFoundException: user_not_found},
        plugins=[BatonPlugin(BatonConfig(handler=handler, database_url=database_url))],
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--handler", default="baton.api.demo:demo_handler")
    args = parser.parse_args()
    app = create(args.database_url, args.handler)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()


def app_from_env() -> Litestar:
    """For `litestar --app tests.plugin_app:app_from_env ...`: the database from
    BATON_DATABASE_URL, as BatonConfig reads any setting it is not given."""
    return Litestar(route_handlers=[hello], plugins=[BatonPlugin(BatonConfig())])
