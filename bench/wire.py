"""Reading Baton's wire objects (PROTOCOL section 5) as cheaply as possible.

One msgspec Struct covers a buffered reply, a refusal and an SSE/WebSocket event object: the
load generator only needs the session id, the token, the event type and the refusal reason,
and msgspec skips every other field without building it.
"""

import msgspec


class WireObject(msgspec.Struct, rename="camel"):
    session_id: str | None = None
    continuation_token: str | None = None
    status: str | None = None
    type: str | None = None  # on SSE and WebSocket event objects
    reason: str | None = None  # on refusals and error events


decode_wire = msgspec.json.Decoder(WireObject).decode


class SseParser:
    """Splits an event stream into (event, data) pairs as bytes arrive, across chunks."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[tuple[str, bytes]]:
        # Normalise line ends on the joined buffer, so a CR LF split across two chunks
        # still becomes one LF.
        self._buffer = (self._buffer + data).replace(b"\r\n", b"\n")
        *blocks, self._buffer = self._buffer.split(b"\n\n")
        return [event for block in blocks if (event := _parse_block(block)) is not None]


def _parse_block(block: bytes) -> tuple[str, bytes] | None:
    event, data = "message", []
    for line in block.split(b"\n"):
        if not line or line.startswith(b":"):
            continue  # a comment: the server's keep-alive ping
        name, _, value = line.partition(b":")
        value = value.removeprefix(b" ")
        if name == b"event":
            event = value.decode()
        elif name == b"data":
            data.append(value)
    return (event, b"\n".join(data)) if data else None
