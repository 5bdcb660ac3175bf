"""What a client asks of a turn, as a transport read it off the wire.

The protocol's rules about presented values live here, once: a token or a session id that
is null or "" counts as absent, and a body's token wins over a header's (PROTOCOL sections
2 and 4). Every transport builds its requests through these types.
"""

from dataclasses import dataclass

from domain.json import JsonObject


def present(value: str | None) -> str | None:
    """A presented identifier, or None: "" counts as absent (PROTOCOL section 4)."""
    return value or None


def presented_token(body: str | None, header: str | None = None) -> str | None:
    """The token a request presents: the body's, unless absent, then the header's."""
    return present(body) or present(header)


@dataclass(frozen=True, slots=True)
class StartRequest:
    input: JsonObject
    token: str | None = None
    session_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "token", present(self.token))
        object.__setattr__(self, "session_id", present(self.session_id))


@dataclass(frozen=True, slots=True)
class ContinueRequest:
    session_id: str
    input: JsonObject
    token: str | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "token", present(self.token))


@dataclass(frozen=True, slots=True)
class CloseRequest:
    session_id: str
    token: str | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "token", present(self.token))
