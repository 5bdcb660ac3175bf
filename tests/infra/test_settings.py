"""Settings come from BATON_* variables and flags, and bad values fail with a clear message."""

import pytest

from baton.infra.database import normalize_url
from baton.infra.settings import DEFAULT_DATABASE_URL, MIB, Settings, SettingsError


def test_defaults_serve_sqlite_on_port_8787_with_full_sync() -> None:
    settings = Settings.from_env({})
    assert settings.database_url == DEFAULT_DATABASE_URL == "sqlite+aiosqlite:///./baton.db"
    assert settings.port == 8787
    assert settings.max_body_bytes == MIB
    assert settings.sqlite_synchronous == "FULL"


def test_environment_is_read_and_flags_override_it() -> None:
    environ = {"BATON_DATABASE_URL": "postgresql://db/x", "BATON_PORT": "9000"}
    settings = Settings.from_env(environ, port=9100, host=None)
    assert settings.database_url == "postgresql://db/x"
    assert settings.port == 9100
    assert settings.host == "127.0.0.1"  # a flag left out (None) overrides nothing


@pytest.mark.parametrize(
    ("variable", "value", "complaint"),
    [
        ("BATON_PORT", "eighty", "BATON_PORT must be a whole number"),
        ("BATON_MAX_BODY_BYTES", "0", "BATON_MAX_BODY_BYTES must be positive"),
        ("BATON_SQLITE_SYNCHRONOUS", "OFF", "must be FULL or NORMAL"),
        ("BATON_DATABASE_URL", "", "must not be empty"),
        ("BATON_DB_WRITE_LANES", "0", "BATON_DB_WRITE_LANES must be positive"),
        ("BATON_DB_WRITE_LANES", "two", "BATON_DB_WRITE_LANES must be a whole number"),
    ],
)
def test_bad_environment_values_are_named_in_the_error(
    variable: str, value: str, complaint: str
) -> None:
    with pytest.raises(SettingsError, match=complaint):
        Settings.from_env({variable: value})


def test_the_refusal_pace_is_read_and_defaults_to_100_a_second() -> None:
    assert Settings.from_env({}).refusal_pace == 100.0
    assert Settings.from_env({"BATON_REFUSAL_PACE": "2.5"}).refusal_pace == 2.5
    assert Settings.from_env({"BATON_REFUSAL_PACE": "1000"}).refusal_pace == 1000.0
    # Handed on to worker processes as it came (api/workers.py).
    paced = Settings.from_env({"BATON_REFUSAL_PACE": "20"})
    assert Settings.from_env(paced.as_environment()).refusal_pace == 20.0


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("0", "BATON_REFUSAL_PACE must be positive and finite, not 0"),
        ("-5", "BATON_REFUSAL_PACE must be positive and finite, not -5"),
        ("inf", "BATON_REFUSAL_PACE must be positive and finite, not inf"),
        ("nan", "BATON_REFUSAL_PACE must be positive and finite, not nan"),
        ("fast", "BATON_REFUSAL_PACE must be a number per second, not 'fast'"),
        ("", "BATON_REFUSAL_PACE must be a number per second, not ''"),
    ],
)
def test_a_refusal_pace_that_is_not_a_positive_rate_is_refused(value: str, complaint: str) -> None:
    with pytest.raises(SettingsError, match=f"^{complaint}$"):
        Settings.from_env({"BATON_REFUSAL_PACE": value})


def test_a_bad_flag_is_named_as_a_flag() -> None:
    with pytest.raises(SettingsError, match="--port must be positive"):
        Settings.from_env({}, port=-1)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgresql://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+asyncpg://u@h/db"),
    ],
)
def test_database_urls_get_the_async_driver(given: str, expected: str) -> None:
    assert normalize_url(given).render_as_string() == expected


@pytest.mark.parametrize(
    ("given", "complaint"),
    [
        ("mysql://u@h/db", "Baton supports sqlite"),
        ("sqlite://", "SQLite needs a file"),
        ("sqlite:///:memory:", "SQLite needs a file"),
        ("::not a url::", "cannot be parsed"),
    ],
)
def test_unsupported_database_urls_are_refused(given: str, complaint: str) -> None:
    with pytest.raises(SettingsError, match=complaint):
        normalize_url(given)


@pytest.mark.parametrize(("raw", "expected"), [("false", False), ("0", False), ("yes", True)])
def test_websockets_can_be_switched_off(raw: str, expected: bool) -> None:
    assert Settings.from_env({"BATON_WEBSOCKETS": raw}).websockets is expected


def test_a_switch_that_is_neither_true_nor_false_is_refused() -> None:
    with pytest.raises(SettingsError, match="BATON_WEBSOCKETS must be true or false"):
        Settings.from_env({"BATON_WEBSOCKETS": "maybe"})


LONG = "k" * 32


@pytest.mark.parametrize(
    ("environ", "complaint"),
    [
        ({"BATON_ADMIN_KEYS": "short"}, "BATON_ADMIN_KEYS: every key must be at least 32"),
        ({"BATON_ADMIN_KEYS": f"{LONG},tiny"}, "at least 32"),
        ({"BATON_API_KEYS": "alice:short"}, "BATON_API_KEYS: every key must be at least 32"),
        ({"BATON_API_KEYS": LONG}, "each entry is name:key"),
        ({"BATON_API_KEYS": f"bad name:{LONG}"}, "each entry is name:key"),
        ({"BATON_API_KEYS": f"a:{LONG},a:{LONG}x"}, "appears twice"),
        ({"BATON_API_KEYS": f"a:{LONG},b:{LONG}"}, "two names share one key"),
        ({"BATON_JWT_SECRET": "short"}, "BATON_JWT_SECRET: every key must be at least 32"),
        ({"BATON_JWT_SECRET": LONG}, "needs BATON_JWT_ISSUER and BATON_JWT_AUDIENCE"),
        (
            {"BATON_JWT_SECRET": LONG, "BATON_JWT_ISSUER": "i"},
            "needs BATON_JWT_ISSUER and BATON_JWT_AUDIENCE",
        ),
        (
            {"BATON_JWT_SECRET": LONG, "BATON_JWT_PUBLIC_KEY_FILE": "/k.pem"},
            "not both",
        ),
    ],
)
def test_guessable_keys_and_unscoped_jwts_are_refused_at_startup(
    environ: dict[str, str], complaint: str
) -> None:
    with pytest.raises(SettingsError, match=complaint):
        Settings.from_env(environ)


def test_the_key_checks_hold_however_settings_are_made() -> None:
    """Code that embeds Baton builds Settings itself: the same checks apply."""
    with pytest.raises(SettingsError, match="at least 32"):
        Settings(admin_keys=("short",))
    with pytest.raises(SettingsError, match="at least 32"):
        Settings(api_keys=(("alice", "short"),))


def test_named_api_keys_and_jwt_settings_are_read() -> None:
    settings = Settings.from_env(
        {
            "BATON_API_KEYS": f" alice:{LONG}, bob.2:{LONG}b ,",
            "BATON_JWT_SECRET": LONG,
            "BATON_JWT_ISSUER": "https://issuer.example",
            "BATON_JWT_AUDIENCE": "baton",
        }
    )
    assert settings.api_keys == (("alice", LONG), ("bob.2", LONG + "b"))
    assert settings.authenticates
    assert settings.verifies_jwt
    assert LONG not in repr(settings)
    assert not Settings.from_env({}).authenticates


def test_the_direct_url_defaults_to_the_database_url() -> None:
    plain = Settings.from_env({"BATON_DATABASE_URL": "postgresql://db/baton"})
    assert (plain.direct_url, plain.behind_pooler) == ("postgresql://db/baton", False)
    pooled = Settings.from_env(
        {
            "BATON_DATABASE_URL": "postgresql://bouncer:6432/baton",
            "BATON_DATABASE_POOLER": "Transaction",
            "BATON_DATABASE_DIRECT_URL": "postgresql://db/baton",
        }
    )
    assert (pooled.direct_url, pooled.behind_pooler) == ("postgresql://db/baton", True)


@pytest.mark.parametrize(
    ("environ", "complaint"),
    [
        ({"BATON_DATABASE_POOLER": "statement"}, "must be none or transaction"),
        # Behind a transaction pooler, migrations and LISTEN would have no session to use.
        ({"BATON_DATABASE_POOLER": "transaction"}, "needs BATON_DATABASE_DIRECT_URL"),
    ],
)
def test_a_pooler_without_a_direct_url_is_refused(environ: dict[str, str], complaint: str) -> None:
    with pytest.raises(SettingsError, match=complaint):
        Settings.from_env(environ)
