"""One settings object, built from the environment (BATON_*) and overridden by CLI flags."""

import dataclasses
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./baton.db"
MIB = 1024 * 1024


class SettingsError(ValueError):
    """A setting that cannot be used; the message names it and says why."""


def _positive_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, not {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be positive, not {value}")
    return value


def _positive_float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, not {raw!r}") from None
    if not value > 0:
        raise SettingsError(f"{name} must be positive, not {value:g}")
    return value


def _rate(name: str, raw: str) -> float:
    """A number per second: positive, and finite (an infinite rate would be no rate at all)."""
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number per second, not {raw!r}") from None
    if not 0 < value < math.inf:
        raise SettingsError(f"{name} must be positive and finite, not {raw.strip()}")
    return value


def _synchronous(name: str, raw: str) -> str:
    value = raw.upper()
    if value not in {"FULL", "NORMAL"}:
        raise SettingsError(f"{name} must be FULL or NORMAL, not {raw!r}")
    return value


def _switch(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be true or false, not {raw!r}")


MIN_KEY_LENGTH = 32  # a bearer key shorter than this can be guessed by a patient client
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _secret(name: str, key: str) -> str:
    if len(key) < MIN_KEY_LENGTH:
        raise SettingsError(
            f"{name}: every key must be at least {MIN_KEY_LENGTH} characters "
            "(try: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return key


def _keys(name: str, raw: str) -> tuple[str, ...]:
    """Comma-separated secrets; empty entries are dropped, so "" means none."""
    return tuple(key for key in (part.strip() for part in raw.split(",")) if key)


def _named_keys(name: str, raw: str) -> tuple[tuple[str, str], ...]:
    """`name:key,...`: each API key with the principal name it authenticates."""
    named: dict[str, str] = {}
    for entry in (part.strip() for part in raw.split(",")):
        if not entry:
            continue
        label, colon, key = entry.partition(":")
        if not colon or not NAME.fullmatch(label):
            raise SettingsError(
                f"{name}: each entry is name:key, the name 1-64 of A-Z a-z 0-9 . _ - "
                "(not starting with . _ or -)"
            )
        if label in named:
            raise SettingsError(f"{name}: the name {label!r} appears twice")
        named[label] = key
    keys = list(named.values())
    if len(set(keys)) != len(keys):
        raise SettingsError(f"{name}: two names share one key")
    return tuple(named.items())


POOLERS = ("none", "transaction")


def _pooler(name: str, raw: str) -> str:
    value = raw.strip().lower()
    if value not in POOLERS:
        raise SettingsError(f"{name} must be none or transaction, not {raw!r}")
    return value


def _text(name: str, raw: str) -> str:
    if not raw:
        raise SettingsError(f"{name} must not be empty")
    return raw


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    # What is session-scoped (migrations, LISTEN) connects here; None: the database URL.
    # Required behind a transaction pooler, where a session does not outlive a transaction.
    database_direct_url: str | None = None
    # "transaction": the database URL is a transaction-pooling PgBouncer (no named prepared
    # statements on it); "none": a direct connection (README, PgBouncer).
    database_pooler: str = "none"
    host: str = "127.0.0.1"
    port: int = 8787
    handler: str = "baton.api.demo:demo_handler"
    max_body_bytes: int = MIB
    # FULL: an acknowledged commit survives a power loss; otherwise a client could hold a
    # token the database forgot. NORMAL is faster and loses only the last commits of a
    # power cut (never on a process crash), so it is an explicit opt-in.
    sqlite_synchronous: str = "FULL"
    sqlite_busy_timeout_ms: int = 5000
    db_pool_size: int = 10
    # PostgreSQL claims (and commits) sent at once, each alone; more wait and go together in
    # one statement (group commit, infra/batcher.py). Fewer lanes batch more under load;
    # one was best from c4 to c64 once a write stopped paying for asyncpg's release.
    db_write_lanes: int = 1
    log_level: str = "info"
    websockets: bool = True  # off: /v1/ws answers 426 (PROTOCOL section 5)
    # The chat page at / (api/web.py); None: served with the demo handler only.
    web: bool | None = None
    turn_timeout: float = 300.0  # seconds a turn may run before it is cancelled and released
    # Seconds a claim stays held without renewal: how soon a crashed replica's session can
    # be taken over. A running turn renews it every third of that. None: the shorter of 30 s
    # and the turn timeout.
    lease_seconds: float | None = None
    shutdown_grace: float = 30.0  # seconds running turns get to finish on SIGTERM
    # Turns one process runs at once; beyond, a new turn gets 503 with Retry-After before
    # anything is claimed (each running turn holds a task, a claim and its handler's memory).
    max_turns: int = 1000
    # Live events (records, deltas) a stream may fall behind its turn before it is dropped;
    # the turn goes on and commits (api/live.py).
    stream_buffer: int = 1000
    # Refused requests a client (principal, or address) may get per window before it is
    # answered 429 until the window ends (api/refusal_limit.py); None: no limit.
    refusal_limit: int | None = None
    refusal_window: float = 60.0
    # 429s a second a blocked client gets at most: its requests wait their turn, so a client
    # that sends again the moment it is answered cannot spend the process's CPU on 429s.
    refusal_pace: float = 100.0
    # Seconds of silence after which an SSE stream sends a `: ping` comment, so proxies and
    # load balancers do not close a stream whose turn is thinking quietly.
    sse_ping_seconds: float = 15.0
    # Seconds the token a turn consumed still recovers that turn's reply (PROTOCOL 6.2).
    recovery_window: float = 24 * 60 * 60.0
    # Bearer keys for /v1/admin (api/admin.py); none: the admin API does not exist. Kept
    # out of repr so that logging the settings never prints a key.
    admin_keys: tuple[str, ...] = dataclasses.field(default=(), repr=False)
    # Principals (api/auth.py): with API keys or a JWT key set, every turn API request must
    # authenticate. Named API keys, bearer; a JWT's key: an HS256 secret, or a PEM public
    # key file (RSA: RS256, Ed25519: EdDSA), with the issuer and audience it must name.
    api_keys: tuple[tuple[str, str], ...] = dataclasses.field(default=(), repr=False)
    jwt_secret: str | None = dataclasses.field(default=None, repr=False)
    jwt_public_key_file: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    # Server processes on one listening socket (api/workers.py); None: one per core on
    # PostgreSQL, one on SQLite.
    workers: int | None = None

    def __post_init__(self) -> None:
        """What no way of building settings may get past: checked however they are made
        (the environment, flags, or code that embeds Baton), so a server never starts with
        a guessable key or a JWT check that names no issuer."""
        for key in self.admin_keys:
            _secret("BATON_ADMIN_KEYS", key)
        for _, key in self.api_keys:
            _secret("BATON_API_KEYS", key)
        if self.jwt_secret is not None:
            _secret("BATON_JWT_SECRET", self.jwt_secret)
        if self.jwt_secret is not None and self.jwt_public_key_file is not None:
            raise SettingsError("set BATON_JWT_SECRET or BATON_JWT_PUBLIC_KEY_FILE, not both")
        if self.behind_pooler and self.database_direct_url is None:
            raise SettingsError(
                "BATON_DATABASE_POOLER=transaction needs BATON_DATABASE_DIRECT_URL: migrations "
                "and LISTEN need a connection of their own, which a transaction pooler breaks"
            )
        if self.verifies_jwt and not (self.jwt_issuer and self.jwt_audience):
            raise SettingsError(
                "a JWT key needs BATON_JWT_ISSUER and BATON_JWT_AUDIENCE: a token minted "
                "for another service must not be accepted here"
            )

    @property
    def behind_pooler(self) -> bool:
        """Whether the database URL is a transaction pooler (PgBouncer's transaction mode)."""
        return self.database_pooler == "transaction"

    @property
    def direct_url(self) -> str:
        """Where migrations and LISTEN connect: a real session, never a pooler's."""
        return self.database_direct_url or self.database_url

    @property
    def verifies_jwt(self) -> bool:
        return self.jwt_secret is not None or self.jwt_public_key_file is not None

    @property
    def authenticates(self) -> bool:
        """Whether the turn API asks every request who it is (api/auth.py)."""
        return bool(self.api_keys) or self.verifies_jwt

    @property
    def lease(self) -> float:
        return self.lease_seconds or min(30.0, self.turn_timeout)

    def as_environment(self) -> dict[str, str]:
        """The BATON_* variables from which Settings.from_env builds these settings again:
        how `baton serve --workers N` hands its flags to worker processes it cannot call."""
        return {
            f"BATON_{field.name.upper()}": _environment_value(getattr(self, field.name))
            for field in fields(self)
            if getattr(self, field.name) is not None
        }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Settings from BATON_* variables, then `overrides` (CLI flags) that are not None."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in fields(cls):
            variable = f"BATON_{field.name.upper()}"
            if variable in environ:
                values[field.name] = _PARSERS[field.name](variable, environ[variable])
        settings = cls(**values)
        given = {name: value for name, value in overrides.items() if value is not None}
        for name, value in given.items():
            _PARSERS[name](f"--{name.replace('_', '-')}", str(value))
        return replace(settings, **given)


def _environment_value(value: object) -> str:
    """A setting as its variable spells it (the inverse of its parser)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(":".join(item) if isinstance(item, tuple) else str(item) for item in value)
    return repr(value) if isinstance(value, float) else str(value)


_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "database_url": _text,
    "database_direct_url": _text,
    "database_pooler": _pooler,
    "host": _text,
    "port": _positive_int,
    "handler": _text,
    "max_body_bytes": _positive_int,
    "sqlite_synchronous": _synchronous,
    "sqlite_busy_timeout_ms": _positive_int,
    "db_pool_size": _positive_int,
    "db_write_lanes": _positive_int,
    "log_level": _text,
    "websockets": _switch,
    "web": _switch,
    "turn_timeout": _positive_float,
    "lease_seconds": _positive_float,
    "shutdown_grace": _positive_float,
    "max_turns": _positive_int,
    "stream_buffer": _positive_int,
    "refusal_limit": _positive_int,
    "refusal_window": _positive_float,
    "refusal_pace": _rate,
    "sse_ping_seconds": _positive_float,
    "recovery_window": _positive_float,
    "admin_keys": _keys,
    "api_keys": _named_keys,
    "jwt_secret": _text,
    "jwt_public_key_file": _text,
    "jwt_issuer": _text,
    "jwt_audience": _text,
    "workers": _positive_int,
}
