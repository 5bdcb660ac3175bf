"""How a turn's SSE body reaches the server: every frame as it comes, and the last one with
the end of the body in one send (api/sse.py), so a streamed turn costs one write fewer."""

from collections.abc import AsyncIterator
from typing import Any

from baton.api.sse import EVENT_STREAM, Final, TurnStream


async def _frames(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def _sent(*chunks: bytes) -> list[dict[str, Any]]:
    response = TurnStream(_frames(*chunks), media_type=EVENT_STREAM).to_asgi_response(
        app=None,
        request=None,  # type: ignore[arg-type]
    )
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        raise AssertionError("a turn's stream never listens for the client")

    await response.send_body(send, receive)
    return sent


async def test_the_final_frame_ends_the_body_in_the_same_send() -> None:
    sent = await _sent(b"priming", b"record", Final(b"outcome"))
    assert [(message["body"], message["more_body"]) for message in sent] == [
        (b"priming", True),
        (b"record", True),
        (b"outcome", False),
    ]


async def test_a_stream_without_a_final_frame_still_ends() -> None:
    sent = await _sent(b"priming", b"record")
    assert [(message["body"], message["more_body"]) for message in sent] == [
        (b"priming", True),
        (b"record", True),
        (b"", False),
    ]
