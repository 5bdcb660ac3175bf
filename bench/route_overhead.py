"""What Litestar's route costs a turn request, against a raw ASGI route (issue 15, item 1).

Both answer a request shaped like a continue (a path parameter, the token and key headers,
the `turns` dependency, a JSON body read, a buffered reply's bytes) in this process, with no
socket, server or database: the CPU time per request is the framework's work and nothing
else. Set against the server's CPU per buffered turn from the same run, it says how much of
a turn a hand-written ASGI route could save, which is what decides whether the turn
endpoints keep the framework (README, "Performance").
"""

import asyncio
import time
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath
from litestar.types import Message, Receive, Scope, Send

from baton.api.rest import KeyHeader, TokenHeader
from baton.api.schemas import TurnReplyBody
from bench import rows
from bench.rows import Row

FRAMEWORK = rows.ROUTE_FRAMEWORK
RAW = rows.ROUTE_RAW
WARMUP = 500
PATH = "/v1/session/01a23673-a1b6-7533-b4f3-15733bd2c8df/message"
TOKEN = "PKEfgNGpWdn6EPYDbRPrnuaKbKDt20tyW6CVHjA7Mnk"
REQUEST_BODY = b'{"message":"hi"}'
HEADERS = [
    (b"host", b"127.0.0.1"),
    (b"content-type", b"application/json"),
    (b"content-length", str(len(REQUEST_BODY)).encode()),
    (b"x-continuation-token", TOKEN.encode()),
]
REPLY = TurnReplyBody(
    session_id=PATH.split("/")[3],
    continuation_token=TOKEN,
    status="finished",
    output={"turn": 2},
    turn=2,
    records=[],
)
_encode = msgspec.json.Encoder().encode


class _Turns:
    """Stands in for the TurnApi dependency: resolving it is part of the route's cost."""


@post("/v1/session/{session_id:str}/message", status_code=200)
async def _framework_route(
    request: Request[Any, Any, Any],
    session_id: FromPath[str],
    turns: NamedDependency[_Turns],
    token_header: TokenHeader = None,
    key_header: KeyHeader = None,
) -> Response[Any]:
    await request.body()
    return Response(REPLY, media_type="application/json")


async def _raw_route(scope: Scope, receive: Receive, send: Send) -> None:
    """The same work by hand: the body, the headers, the session id, the reply."""
    message: Any = await receive()
    msgspec.json.decode(message.get("body", b""))
    headers = dict(scope["headers"])
    headers.get(b"x-continuation-token"), headers.get(b"idempotency-key")
    scope["path"].split("/")[3]
    body = _encode(REPLY)
    length = str(len(body)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", length)],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _framework_app() -> Litestar:
    turns = _Turns()
    return Litestar(
        [_framework_route],
        dependencies={"turns": Provide(lambda: turns, sync_to_thread=False)},
        openapi_config=None,
    )


async def _per_request(app: Any, requests: int) -> float:
    """CPU seconds per request, after a warm-up."""
    state: dict[str, Any] = {}

    async def receive() -> Any:
        return {"type": "http.request", "body": REQUEST_BODY, "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] != 200:
            raise RuntimeError(f"the route answered {message['status']}")

    async def once() -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": PATH,
            "raw_path": PATH.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": HEADERS,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8787),
            "state": state,
        }
        await app(scope, receive, send)

    for _ in range(WARMUP):
        await once()
    began = time.process_time()
    for _ in range(requests):
        await once()
    return (time.process_time() - began) / requests


def _row(name: str, seconds: float, requests: int) -> Row:
    return Row(
        name=name,
        backend=rows.NO_BACKEND,
        concurrency=1,
        rate=1 / seconds,
        unit="req/CPU-s",
        p50_ms=None,
        p99_ms=None,
        refusals={},
        errors={},
        loadgen_cpu=None,
        count=requests,
        extra={"cpu_us_per_request": round(seconds * 1e6, 2)},
        notes=["in-process, no socket or server: the route's own CPU per request"],
    )


def measure_routes(requests: int) -> list[Row]:
    """The framework route and the raw one, each measured twice, alternately (the faster
    of the two runs counts: the machine's noise only ever adds time)."""
    framework = _framework_app()
    best = {FRAMEWORK: float("inf"), RAW: float("inf")}
    for _ in range(2):
        for name, app in ((FRAMEWORK, framework), (RAW, _raw_route)):
            best[name] = min(best[name], asyncio.run(_per_request(app, requests)))
    return [_row(name, seconds, requests) for name, seconds in best.items()]
