"""A minimal HTTP/1.1 keep-alive client for the load generator.

The load generator shares two cores with the server and the database, so every microsecond
it spends is one the server does not get. This client does only what the benchmark needs:
one persistent connection, requests built as bytes up front, the status line, a
Content-Length body or a chunked one (SSE), and nothing else (no redirects, no cookies, no
header objects). A general client such as httpx costs several times more per request.
"""

import asyncio
import contextlib
from dataclasses import dataclass

HEAD_END = b"\r\n\r\n"
CRLF = b"\r\n"
_CONTENT_LENGTH = b"\r\ncontent-length:"
_CHUNKED = b"\r\ntransfer-encoding: chunked"
_CLOSE = b"\r\nconnection: close"


class ProtocolError(Exception):
    """The server answered something this client does not read (it would be a server bug)."""


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    head: bytes  # the status line and headers, lower-cased


def request_bytes(
    method: str, path: str, host: str, body: bytes, headers: tuple[tuple[str, str], ...] = ()
) -> bytes:
    """A complete request, ready to write."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    if body:
        lines.append("Content-Type: application/json")
    lines.extend(f"{name}: {value}" for name, value in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class HttpConnection:
    """One keep-alive connection. Not safe for concurrent requests: one virtual client each."""

    def __init__(self, host: str, port: int, *, source: str | None = None) -> None:
        self.host = host
        self.port = port
        # The local address to connect from (None: the kernel's choice). All of 127/8 is
        # loopback on Linux, so one machine can be several clients to a server on 127.0.0.1.
        self.source = source
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def authority(self) -> str:
        return f"{self.host}:{self.port}"

    async def open(self) -> None:
        local = (self.source, 0) if self.source is not None else None
        self._reader, self._writer = await asyncio.open_connection(
            self.host, self.port, local_addr=local
        )

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):  # the server may have gone first
                await writer.wait_closed()

    async def send(self, request: bytes) -> None:
        if self._writer is None:
            await self.open()
        assert self._writer is not None
        self._writer.write(request)

    async def read_head(self) -> tuple[int, bytes]:
        """The status code and the lower-cased head (status line and headers)."""
        assert self._reader is not None
        head = await self._reader.readuntil(HEAD_END)
        if not head.startswith(b"HTTP/1.1 "):
            raise ProtocolError(f"not an HTTP/1.1 response: {head[:40]!r}")
        return int(head[9:12]), head.lower()

    async def read_sized_body(self, head: bytes) -> bytes:
        assert self._reader is not None
        start = head.find(_CONTENT_LENGTH)
        if start < 0:
            raise ProtocolError("a buffered response without Content-Length")
        start += len(_CONTENT_LENGTH)
        length = int(head[start : head.index(CRLF, start)])
        return await self._reader.readexactly(length)

    async def read_chunk(self) -> bytes:
        """The next chunk of a chunked body; b"" is the last one (its trailer is consumed)."""
        assert self._reader is not None
        size_line = await self._reader.readuntil(CRLF)
        size = int(size_line.split(b";", 1)[0], 16)
        if size == 0:
            await self._reader.readuntil(CRLF)  # no trailers: the empty line ends the body
            return b""
        chunk = await self._reader.readexactly(size + 2)
        return chunk[:-2]

    async def finish(self, head: bytes) -> None:
        """Honour `Connection: close`: the next request reconnects."""
        if _CLOSE in head:
            await self.close()

    async def request(self, request: bytes) -> Response:
        """Send a request and read a buffered (Content-Length or chunked) response."""
        await self.send(request)
        status, head = await self.read_head()
        if _CHUNKED in head:
            parts = []
            while chunk := await self.read_chunk():
                parts.append(chunk)
            body = b"".join(parts)
        else:
            body = await self.read_sized_body(head)
        await self.finish(head)
        return Response(status, body, head)

    def is_chunked(self, head: bytes) -> bool:
        return _CHUNKED in head
