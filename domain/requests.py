"""What a client asks, as a transport read it off the wire.

The protocol's rules about presented values live here, once: a token or a session id that
is null or "" counts as absent, and a body's token wins over a header's (PROTOCOL sections
2 and 4). Every transport builds its requests through these types.
"""

from baton.domain.events import RecoveredVia
from baton.domain.json import JsonObject
from baton.domain.values import value

# PROTOCOL section 6.4: 1 to 255 visible ASCII characters; on a start, the key is the only
# secret that recovers the first token, so it must carry at least as much as 22 base64url
# characters do (132 bits).
KEY_LENGTH = range(1, 256)
START_KEY_MIN = 22


class InvalidKey(ValueError):
    """An Idempotency-Key the protocol does not accept; the message says why."""


def idempotency_key(value: str | None, *, starting: bool) -> str | None:
    """The key as a request presents it (already unquoted), checked; None when absent."""
    if value is None:
        return None
    # Visible ASCII, "!" to "~", checked by str's own methods in C rather than by a
    # generator stepping through every character.
    visible = value.isascii() and value.isprintable() and " " not in value
    if len(value) not in KEY_LENGTH or not visible:
        raise InvalidKey("an Idempotency-Key is 1 to 255 visible ASCII characters")
    if starting and len(value) < START_KEY_MIN:
        raise InvalidKey(
            f"an Idempotency-Key on a start must be at least {START_KEY_MIN} characters: "
            "it is the only secret that recovers the first token"
        )
    return value


def present(value: str | None) -> str | None:
    """A presented identifier, or None: "" counts as absent (PROTOCOL section 4)."""
    return value or None


def presented_token(body: str | None, header: str | None = None) -> str | None:
    """The token a request presents: the body's, unless absent, then the header's."""
    return present(body) or present(header)


@value
class StartRequest:
    input: JsonObject
    token: str | None = None
    session_id: str | None = None
    key: str | None = None  # the Idempotency-Key (PROTOCOL section 6.4)
    principal: str | None = None  # who asks (domain/principals.py)

    def __post_init__(self) -> None:
        object.__setattr__(self, "token", present(self.token))
        object.__setattr__(self, "session_id", present(self.session_id))


@value
class ContinueRequest:
    session_id: str
    input: JsonObject
    token: str | None
    key: str | None = None  # the Idempotency-Key (PROTOCOL section 6.4)
    principal: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "token", present(self.token))


@value
class SessionRequest:
    """A request about a session as a whole, with a token: close it, cancel its turn."""

    session_id: str
    token: str | None
    principal: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "token", present(self.token))


CloseRequest = SessionRequest
CancelRequest = SessionRequest


@value
class ReadRequest:
    """A read of the session or of its events (PROTOCOL sections 6.1 to 6.3)."""

    session_id: str
    token: str | None
    via: RecoveredVia = RecoveredVia.READ
    principal: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "token", present(self.token))
