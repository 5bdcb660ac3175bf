"""What the recovery tests (test_recovery.py) need of a client: an SSE stream read message
by message and cut at will, a proxy that loses replies in transit, and a search of
everything an auditor can read for a way from an old token to a later one."""

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx

from baton.domain.identifiers import digest_token, unseal_token, unseal_under_key

READ_SECONDS = 60.0  # a deadline for one message of a stream, never a pause

# --------------------------------------------------------------- SSE, message by message


@dataclass(frozen=True)
class Message:
    """One SSE message as sent: the priming message has an id and neither event nor data."""

    id: int | None
    event: str | None
    data: dict[str, Any] | None


async def messages(response: httpx.Response) -> AsyncIterator[Message]:
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if not line:
            if fields:
                yield _message(fields)
            fields = {}
        elif not line.startswith(":"):  # a comment: a keep-alive ping
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
    if fields:
        yield _message(fields)


def _message(fields: dict[str, str]) -> Message:
    seq = fields.get("id")
    data = fields.get("data")
    return Message(
        int(seq) if seq is not None else None,
        fields.get("event"),
        json.loads(data) if data is not None else None,
    )


class EventStream:
    """One SSE request on a connection of its own, so that closing it cuts the connection
    as a client that goes away (or a proxy that dies) would."""

    def __init__(
        self,
        base_url: str,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
    ) -> None:
        self._client = httpx.AsyncClient(base_url=base_url, timeout=READ_SECONDS)
        self._request = self._client.build_request(
            method,
            path,
            headers={"Accept": "text/event-stream", **(headers or {})},
            json=json_body,
        )
        self._response: httpx.Response | None = None
        self._messages: AsyncIterator[Message] | None = None

    @property
    def response(self) -> httpx.Response:
        assert self._response is not None, "the stream is not open"
        return self._response

    async def __aenter__(self) -> "EventStream":
        self._response = await self._client.send(self._request, stream=True)
        self._messages = messages(self._response)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._response is not None:
            await self._response.aclose()
        await self._client.aclose()

    async def next(self) -> Message:
        assert self._messages is not None, "the stream is not open"
        async with asyncio.timeout(READ_SECONDS):
            return await anext(self._messages)

    async def rest(self) -> "Ending":
        """Every message up to the end of the stream, and how it ended."""
        assert self._messages is not None, "the stream is not open"
        received: list[Message] = []
        try:
            async with asyncio.timeout(READ_SECONDS):
                async for message in self._messages:
                    received.append(message)
        except httpx.TransportError as error:
            return Ending(received, error)
        return Ending(received, None)


@dataclass(frozen=True)
class Ending:
    messages: list[Message]
    cut: httpx.TransportError | None  # None: the server ended the stream itself


# --------------------------------------------------------------- replies lost in transit


@dataclass(frozen=True)
class Dropped:
    """A reply the server sent in full and the client never got."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class DroppingProxy:
    """A TCP proxy in front of a server that forwards requests and loses the replies: it
    reads the server's whole response, keeps it, then closes the client's connection
    without a byte of it, as a load balancer that dies at the wrong moment would."""

    upstream_port: int
    dropped: list[Dropped] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> "DroppingProxy":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, client: asyncio.StreamReader, to_client: asyncio.StreamWriter) -> None:
        upstream, to_upstream = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        forwarding = asyncio.create_task(_pipe(client, to_upstream))
        try:
            self.dropped.append(await _read_response(upstream))
        finally:
            forwarding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await forwarding
            to_client.transport.abort()  # the reply is lost: not a byte of it goes back
            to_upstream.close()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    while chunk := await source.read(65536):
        sink.write(chunk)
        await sink.drain()


async def _read_response(upstream: asyncio.StreamReader) -> Dropped:
    """One HTTP/1.1 response with a Content-Length (a buffered Baton reply)."""
    head = (await upstream.readuntil(b"\r\n\r\n")).decode("latin-1")
    status_line, *lines = head.rstrip("\r\n").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await upstream.readexactly(int(headers["content-length"]))
    return Dropped(int(status_line.split()[1]), headers, body)


# --------------------------------------------------------------- looking for leaked tokens

_BASE64URL_RUN = re.compile(r"[A-Za-z0-9_-]{43,}")
TOKEN_LENGTH = 43  # 32 bytes in unpadded base64url


def candidates(texts: Iterable[str]) -> set[str]:
    """Every 43-character base64url-looking string in `texts`: each such run, and every
    43-character window of a longer run (a sealed token hidden inside another value)."""
    found: set[str] = set()
    for text in texts:
        for run in _BASE64URL_RUN.findall(text):
            found.update(run[i : i + TOKEN_LENGTH] for i in range(len(run) - TOKEN_LENGTH + 1))
    return found


def unsealed_tokens(texts: Iterable[str], secrets: Iterable[str], later: Iterable[str]) -> set[str]:
    """Which of the `later` tokens anything in `texts` yields when unsealed with any of the
    `secrets` (a token, as the pad of a seal under it, or an Idempotency-Key): the result
    of each unseal is compared by digest, as the server itself would check it."""
    wanted = {digest_token(token): token for token in later}
    held = list(secrets)
    leaked: set[str] = set()
    for candidate in candidates(texts):
        for secret in held:
            for unseal in (unseal_token, unseal_under_key):
                try:
                    opened = unseal(candidate, secret)
                except ValueError:
                    continue
                if digest_token(opened) in wanted:
                    leaked.add(wanted[digest_token(opened)])
    return leaked


def dumped(value: Any) -> str:
    """Any value read from a table or an API, as text to search."""
    return json.dumps(value, default=str, ensure_ascii=False)
