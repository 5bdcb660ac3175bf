"""One settings object, built from the environment (BATON_*) and overridden by CLI flags."""

import dataclasses
import os
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


def _keys(name: str, raw: str) -> tuple[str, ...]:
    """Comma-separated secrets; empty entries are dropped, so "" means none."""
    return tuple(key for key in (part.strip() for part in raw.split(",")) if key)


def _text(name: str, raw: str) -> str:
    if not raw:
        raise SettingsError(f"{name} must not be empty")
    return raw


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    host: str = "127.0.0.1"
    port: int = 8787
    handler: str = "api.demo:demo_handler"
    max_body_bytes: int = MIB
    # FULL: an acknowledged commit survives a power loss; otherwise a client could hold a
    # token the database forgot. NORMAL is faster and loses only the last commits of a
    # power cut (never on a process crash), so it is an explicit opt-in.
    sqlite_synchronous: str = "FULL"
    sqlite_busy_timeout_ms: int = 5000
    db_pool_size: int = 10
    log_level: str = "info"
    websockets: bool = True  # off: /v1/ws answers 426 (PROTOCOL section 5)
    turn_timeout: float = 300.0  # seconds a turn may run before it is cancelled and released
    # Seconds a claim stays held without renewal: how soon a crashed replica's session can
    # be taken over. A running turn renews it every third of that. None: the shorter of 30 s
    # and the turn timeout.
    lease_seconds: float | None = None
    shutdown_grace: float = 30.0  # seconds running turns get to finish on SIGTERM
    # Seconds of silence after which an SSE stream sends a `: ping` comment, so proxies and
    # load balancers do not close a stream whose turn is thinking quietly.
    sse_ping_seconds: float = 15.0
    # Seconds the token a turn consumed still recovers that turn's reply (PROTOCOL 6.2).
    recovery_window: float = 24 * 60 * 60.0
    # Bearer keys for /v1/admin (api/admin.py); none: the admin API does not exist. Kept
    # out of repr so that logging the settings never prints a key.
    admin_keys: tuple[str, ...] = dataclasses.field(default=(), repr=False)

    @property
    def lease(self) -> float:
        return self.lease_seconds or min(30.0, self.turn_timeout)

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


_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "database_url": _text,
    "host": _text,
    "port": _positive_int,
    "handler": _text,
    "max_body_bytes": _positive_int,
    "sqlite_synchronous": _synchronous,
    "sqlite_busy_timeout_ms": _positive_int,
    "db_pool_size": _positive_int,
    "log_level": _text,
    "websockets": _switch,
    "turn_timeout": _positive_float,
    "lease_seconds": _positive_float,
    "shutdown_grace": _positive_float,
    "sse_ping_seconds": _positive_float,
    "recovery_window": _positive_float,
    "admin_keys": _keys,
}
