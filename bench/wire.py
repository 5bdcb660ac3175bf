"""Reading Baton's wire objects (PROTOCOL section 5) as cheaply as possible.

One msgspec Struct covers a buffered reply, a refusal and an SSE/WebSocket event object: the
load generator only needs the session id, the token, the turn, the event type and the refusal
reason, and msgspec skips every other field without building it.
"""

import msgspec


class WireObject(msgspec.Struct, rename="camel"):
    session_id: str | None = None
    continuation_token: str | None = None
    status: str | None = None
    turn: int | None = None
    type: str | None = None  # on SSE and WebSocket event objects
    reason: str | None = None  # on refusals and error events


decode_wire = msgspec.json.Decoder(WireObject).decode


class SseParser:
    """Splits an event stream into (event, data) pairs as bytes arrive, across chunks.

    A message without data (the priming message every Baton stream begins with: an `id:`
    and a `retry:`) is no event, as for a browser's EventSource; its `id:` still counts:
    `last_id` is where a client resumes from (PROTOCOL section 6.3), and `first_id` the
    priming message's (a turn stream's: its claim's seq)."""

    def __init__(self) -> None:
        self._buffer = b""
        self.first_id: str | None = None  # the first `id:` field: a Baton stream's priming id
        self.last_id: str | None = None  # the last `id:` field seen, as EventSource keeps it

    def feed(self, data: bytes) -> list[tuple[str, bytes]]:
        # Normalise line ends on the joined buffer, so a CR LF split across two chunks
        # still becomes one LF.
        self._buffer = (self._buffer + data).replace(b"\r\n", b"\n")
        *blocks, self._buffer = self._buffer.split(b"\n\n")
        events = []
        for block in blocks:
            event, data_lines, message_id = _parse_block(block)
            if message_id is not None:
                self.last_id = message_id
                if self.first_id is None:
                    self.first_id = message_id
            if data_lines:
                events.append((event, b"\n".join(data_lines)))
        return events


def _parse_block(block: bytes) -> tuple[str, list[bytes], str | None]:
    event, data, message_id = "message", [], None
    for line in block.split(b"\n"):
        if not line or line.startswith(b":"):
            continue  # a comment: the server's keep-alive ping
        name, _, value = line.partition(b":")
        value = value.removeprefix(b" ")
        if name == b"event":
            event = value.decode()
        elif name == b"data":
            data.append(value)
        elif name == b"id":
            message_id = value.decode()
    return event, data, message_id
