"""Who is asking: the turn API's authentication, off by default (README, Principals).

With API keys (BATON_API_KEYS="name:key,...") or a JWT key configured, every request to the
turn API (REST, SSE and the WebSocket upgrade) must carry `Authorization: Bearer <secret>`:
one of the keys, or a JWT signed with the configured key that names the configured issuer
and audience, expires, and has a subject. The principal is "key:<name>" or "jwt:<subject>";
the two namespaces never meet, so an identity provider cannot mint a subject that passes for
a key. A request that fails is answered 401 `unauthenticated` and counted in /metrics,
never stored: unauthenticated traffic must not be able to grow the event table.

The check is Litestar's authentication middleware, on the turn API's router only: health,
metrics, the schema, the chat page and the admin API (which has its own keys) stay as
they are. The domain decides what a principal may see (domain/principals.py).
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.middleware import DefineMiddleware
from litestar.middleware.authentication import (
    AbstractAuthenticationMiddleware,
    AuthenticationResult,
)
from litestar.openapi.spec import Reference, SecurityScheme
from litestar.types import ASGIApp

from baton.api.errors import UNAUTHENTICATED, ApiError
from baton.api.metrics import Metrics
from baton.infra.settings import Settings, SettingsError

SCHEME = "bearer"
SUBJECT_LIMIT = 190  # a principal fits the owner column with its "jwt:" prefix
LEEWAY_SECONDS = 30  # for clocks a little apart between the issuer and this server


class Unauthenticated(Exception):
    """The request did not say who it is; the message says what was wrong."""


@dataclass(frozen=True, slots=True)
class JwtCheck:
    key: Any  # an HS256 secret, or a public key object
    algorithm: str  # from the configured key, never from the token's header
    issuer: str
    audience: str

    def principal(self, token: str) -> str:
        try:
            claims = jwt.decode(
                token,
                self.key,
                algorithms=[self.algorithm],
                issuer=self.issuer,
                audience=self.audience,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as error:
            raise Unauthenticated(f"the bearer JWT is not accepted: {error}") from None
        subject = claims["sub"]
        if not isinstance(subject, str) or not _printable(subject, SUBJECT_LIMIT):
            raise Unauthenticated(f"a JWT subject is 1 to {SUBJECT_LIMIT} printable characters")
        return f"jwt:{subject}"


def _printable(text: str, limit: int) -> bool:
    return 0 < len(text) <= limit and text.isprintable()


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True, slots=True)
class Authenticator:
    """Turns a bearer secret into a principal. Keys are looked up by their SHA-256, so
    the lookup's timing says nothing about any key."""

    keys: dict[bytes, str]  # digest of the key -> principal
    jwt: JwtCheck | None

    def principal(self, authorization: str | None) -> str:
        scheme, _, secret = (authorization or "").partition(" ")
        secret = secret.strip()
        if scheme.lower() != SCHEME or not secret:
            raise Unauthenticated("this server wants Authorization: Bearer <key or JWT>")
        named = self.keys.get(_digest(secret))
        if named is not None:
            return named
        if self.jwt is not None and secret.count(".") == 2:
            return self.jwt.principal(secret)
        raise Unauthenticated("the bearer key is not one of this server's")


def authenticator(settings: Settings) -> Authenticator | None:
    """The settings' authenticator; None when the turn API authenticates no one."""
    if not settings.authenticates:
        return None
    keys = {_digest(key): f"key:{name}" for name, key in settings.api_keys}
    return Authenticator(keys, _jwt_check(settings))


def _jwt_check(settings: Settings) -> JwtCheck | None:
    issuer, audience = settings.jwt_issuer or "", settings.jwt_audience or ""
    if settings.jwt_secret is not None:
        return JwtCheck(settings.jwt_secret, "HS256", issuer, audience)
    if settings.jwt_public_key_file is None:
        return None
    path = Path(settings.jwt_public_key_file)
    try:
        key = load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as error:
        raise SettingsError(f"BATON_JWT_PUBLIC_KEY_FILE {path}: {error}") from None
    if isinstance(key, RSAPublicKey):
        return JwtCheck(key, "RS256", issuer, audience)
    if isinstance(key, Ed25519PublicKey):
        return JwtCheck(key, "EdDSA", issuer, audience)
    raise SettingsError(f"BATON_JWT_PUBLIC_KEY_FILE {path}: not an RSA or Ed25519 public key")


class PrincipalMiddleware(AbstractAuthenticationMiddleware):
    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        super().__init__(app)
        self._authenticator = authenticator

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        try:
            principal = self._authenticator.principal(connection.headers.get("authorization"))
        except Unauthenticated as error:
            if connection.scope["type"] == ScopeType.WEBSOCKET:
                # Refused at the handshake (no HTTP error response counts it there).
                Metrics.of(connection.app).count_error(UNAUTHENTICATED)
            raise ApiError(UNAUTHENTICATED, str(error)) from None
        return AuthenticationResult(user=principal, auth=None)


def authentication(settings: Settings) -> list[DefineMiddleware]:
    """The turn API router's middleware: none when it authenticates no one."""
    checker = authenticator(settings)
    return [] if checker is None else [DefineMiddleware(PrincipalMiddleware, authenticator=checker)]


BEARER_SCHEME = "bearer"  # its name in the OpenAPI schema's security schemes


@dataclass(frozen=True, slots=True)
class OpenApiSecurity:
    """What the schema says of authentication: the turn API router's `security` and the
    schemes it names (none when the turn API authenticates no one)."""

    requirement: list[dict[str, list[str]]] | None
    schemes: dict[str, SecurityScheme | Reference]


def openapi_security(settings: Settings) -> OpenApiSecurity:
    if not settings.authenticates:
        return OpenApiSecurity(None, {})
    scheme = SecurityScheme(
        type="http",
        scheme="bearer",
        description="an API key (BATON_API_KEYS) or a JWT from the configured issuer",
    )
    return OpenApiSecurity([{BEARER_SCHEME: []}], {BEARER_SCHEME: scheme})


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The request's principal; None when the turn API authenticates no one."""
    user = connection.scope.get("user")
    return user if isinstance(user, str) else None
