"""Which answer a turn request gets: a stream only when the client prefers text/event-stream."""

import pytest
from litestar import Request

from baton.api.rest import wants_stream


def request_accepting(accept: str | None) -> Request[object, object, object]:
    headers = [] if accept is None else [(b"accept", accept.encode())]
    return Request({"type": "http", "method": "POST", "path": "/", "headers": headers})


@pytest.mark.parametrize(
    ("accept", "streamed"),
    [
        (None, False),
        ("", False),
        ("application/json", False),
        ("*/*", False),
        ("text/event-stream", True),
        ("text/event-stream, application/json;q=0.5", True),
        ("application/json;q=0.5, text/event-stream", True),
        ("text/event-stream;q=0.1, application/json", False),
    ],
)
def test_a_stream_is_what_the_client_prefers(accept: str | None, streamed: bool) -> None:
    assert wants_stream(request_accepting(accept)) is streamed
