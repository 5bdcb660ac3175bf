"""A TCP proxy for the client's tests that drops connections at chosen moments.

It runs its own event loop in a thread of its own, so sync and async tests can both use it.
HTTP/1.1 without pipelining alternates: a request (bytes from the client), then its reply
(bytes from the server). For every request the proxy asks `plan(head)` (the request's first
bytes: method, path, headers) what to do with that exchange:
- `before`: close the connection without forwarding the request (it never reaches the server);
- `after-request`: forward the request, then close (50 ms later, or at the reply's first
  byte if it comes sooner) before any of the reply is forwarded;
- `mid-reply`: forward the reply's head and `body_bytes` bytes of its body (or, with a
  `marker`, everything up to the end of the first SSE message containing it), then close;
- `pass`: forward everything.
`strip_key` removes the Idempotency-Key header from the request on its way (a hop that loses it).
"""

import asyncio
import contextlib
import re
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

PASS, BEFORE, AFTER_REQUEST, MID_REPLY = "pass", "before", "after-request", "mid-reply"
HEAD_END = b"\r\n\r\n"
REQUEST_SECONDS = 0.05  # after-request: how long the rest of a request may take to arrive
_KEY_LINE = re.compile(rb"\r\nidempotency-key:[^\r]*", re.IGNORECASE)


@dataclass(frozen=True)
class Drop:
    when: str = PASS
    body_bytes: int = 0
    marker: bytes | None = None
    strip_key: bool = False


Plan = Callable[[bytes], Drop]


def forward_all(_: bytes) -> Drop:
    return Drop()


class _Exchange:
    """One request and its reply on a connection."""

    def __init__(self, drop: Drop) -> None:
        self.drop = drop
        self.reply = b""
        self.forwarded = 0

    def cut(self, chunk: bytes) -> tuple[bytes, bool]:
        """What of the reply to forward now, and whether to close after it (mid-reply)."""
        self.reply += chunk
        head_end = self.reply.find(HEAD_END)
        if head_end < 0:
            return b"", False  # hold the head back until the cut can be placed
        body_start = head_end + len(HEAD_END)
        if self.drop.marker is None:
            limit = body_start + self.drop.body_bytes
            if len(self.reply) < limit:
                return self._take(len(self.reply)), False
            return self._take(limit), True
        found = self.reply.find(self.drop.marker, body_start)
        end = self.reply.find(HEAD_END, found) if found >= 0 else -1
        if end < 0:
            return self._take(len(self.reply)), False
        return self._take(end + len(HEAD_END)), True

    def _take(self, limit: int) -> bytes:
        piece = self.reply[self.forwarded : limit]
        self.forwarded = max(self.forwarded, limit)
        return piece


async def _forward_for(
    seconds: float, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()


class DropProxy:
    def __init__(self, upstream_port: int, plan: Plan = forward_all) -> None:
        self.upstream_port = upstream_port
        self.plan = plan
        self.faults: Counter[str] = Counter()
        self.requests: list[bytes] = []  # every request's head, in order
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "DropProxy":
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        self.port = future.result(timeout=10)
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> "DropProxy":
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def _listen(self) -> int:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _connection(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.upstream_port
            )
        except OSError:
            client_writer.close()
            return
        writers = (client_writer, upstream_writer)
        exchange: list[_Exchange | None] = [None]  # the current one, shared by both pumps
        pumps = [
            asyncio.ensure_future(self._requests(client_reader, upstream_writer, exchange)),
            asyncio.ensure_future(self._replies(upstream_reader, client_writer, exchange)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            for writer in writers:
                writer.close()
            for writer in writers:
                with contextlib.suppress(OSError, asyncio.CancelledError):
                    await writer.wait_closed()

    async def _requests(
        self,
        reader: asyncio.StreamReader,
        upstream: asyncio.StreamWriter,
        exchange: list[_Exchange | None],
    ) -> None:
        while chunk := await reader.read(65536):
            current = exchange[0]
            if current is None or current.reply:  # bytes after a reply: the next request
                drop = self.plan(chunk)
                self.requests.append(chunk.split(HEAD_END, 1)[0])
                self.faults[drop.when] += 1
                if drop.when == BEFORE:
                    return
                current = exchange[0] = _Exchange(drop)
                if drop.strip_key:
                    chunk = _KEY_LINE.sub(b"", chunk, count=1)
            upstream.write(chunk)
            await upstream.drain()
            if current.drop.when == AFTER_REQUEST:
                await _forward_for(REQUEST_SECONDS, reader, upstream)
                return  # the request is in, the reply is not out: drop the connection

    async def _replies(
        self,
        reader: asyncio.StreamReader,
        client: asyncio.StreamWriter,
        exchange: list[_Exchange | None],
    ) -> None:
        while chunk := await reader.read(65536):
            current = exchange[0]
            when = current.drop.when if current is not None else PASS
            if when == AFTER_REQUEST:
                return
            if current is None or when == PASS:
                if current is not None:
                    current.reply += chunk[:1]  # the reply has begun
                client.write(chunk)
            else:
                piece, close = current.cut(chunk)
                client.write(piece)
                if close:
                    await client.drain()
                    return
            await client.drain()
