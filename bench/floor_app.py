"""The http-floor: a trivial Litestar app with one JSON POST endpoint, served exactly like
`baton serve` (api.serving.run_server, same settings), so Baton's c16 turns can be compared with
what the same web stack does when the handler does nothing.

Run as `python -m bench.floor_app --port P`.
"""

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from litestar import Litestar, get, post

from baton.api.serving import run_server
from baton.infra.settings import Settings


@post("/echo", status_code=200)
async def echo(data: dict[str, Any]) -> dict[str, Any]:
    """Echo a small JSON object: parse the body, answer JSON, nothing else."""
    return {"echo": data.get("message")}


@get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def create_floor_app(settings: Settings) -> Litestar:
    # The body limit is the one setting of Baton's app that touches a request.
    return Litestar(route_handlers=[echo, healthz], request_max_body_size=settings.max_body_bytes)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor_app")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    settings = Settings.from_env(port=args.port)  # BATON_* as baton serve reads them
    run_server(create_floor_app(settings), settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
