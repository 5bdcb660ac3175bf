"""How many processes `baton serve` runs, and the settings its workers rebuild from the
environment (the processes themselves: tests/e2e/test_workers.py)."""

import os
from pathlib import Path

import pytest

from baton.api import cli
from baton.api.workers import app_from_environment, cores, worker_count
from baton.infra.settings import Settings, SettingsError

POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1/baton"
SQLITE = "sqlite+aiosqlite:///./baton.db"


def test_postgresql_serves_one_worker_per_core_unless_told() -> None:
    assert worker_count(Settings(database_url=POSTGRES)) == cores() == len(os.sched_getaffinity(0))
    assert worker_count(Settings(database_url=POSTGRES, workers=3)) == 3


@pytest.mark.parametrize("workers", [None, 1])
def test_sqlite_serves_one_worker(workers: int | None) -> None:
    assert worker_count(Settings(database_url=SQLITE, workers=workers)) == 1


def test_sqlite_refuses_more_workers_and_says_why() -> None:
    with pytest.raises(SettingsError, match=r"--workers 2 on SQLite: one SQLite file has one"):
        worker_count(Settings(database_url=SQLITE, workers=2))


def test_baton_serve_refuses_workers_on_sqlite_before_touching_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = tmp_path / "never.db"
    url = f"sqlite+aiosqlite:///{database}"
    assert cli.main(["serve", "--workers", "2", "--database-url", url]) == 2
    assert "use PostgreSQL for more" in capsys.readouterr().err
    assert not database.exists()  # refused before the migration


def test_workers_come_from_baton_workers_and_must_be_positive() -> None:
    assert Settings.from_env({"BATON_WORKERS": "4"}).workers == 4
    with pytest.raises(SettingsError, match="BATON_WORKERS must be positive"):
        Settings.from_env({"BATON_WORKERS": "0"})


def test_settings_survive_the_trip_through_the_environment_to_a_worker() -> None:
    """Every kind of setting (text, whole numbers, seconds, switches, key lists) comes back
    from its BATON_* variable as it was: flags reach the workers unchanged."""
    settings = Settings(
        database_url=POSTGRES,
        port=9123,
        turn_timeout=12.5,
        lease_seconds=0.1 + 0.2,  # a float whose short repr is not its str in every Python
        websockets=False,
        web=True,
        admin_keys=("a" * 32, "b" * 40),
        api_keys=(("svc", "k" * 32), ("other", "q" * 33)),
        jwt_secret="s" * 32,
        jwt_issuer="issuer",
        jwt_audience="baton",
        workers=2,
    )
    environment = settings.as_environment()
    assert "BATON_JWT_PUBLIC_KEY_FILE" not in environment  # None: left unset
    assert Settings.from_env(environment) == settings
    assert Settings.from_env(Settings().as_environment()) == Settings()


def test_the_factory_builds_the_app_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_DATABASE_URL", SQLITE)
    monkeypatch.setenv("BATON_WEB", "false")
    app = app_from_environment()
    assert "/" not in {route.path for route in app.routes}  # BATON_WEB was read
