"""Baton as a user installs it: the wheel, into a fresh virtual environment, beside an
application that has packages of its own called `api` and `domain` (issue 14). The wheel
holds one top-level package, `baton`; both the application and `baton` run."""

import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]

USERS_APP = """
import sys
from litestar import Litestar, get
from litestar.testing import TestClient

import api, domain  # the application's own packages, not Baton's
from baton import BatonConfig, BatonPlugin, Finished, Turn

@get("/mine")
async def mine() -> dict[str, str]:
    return {"api": api.NAME, "domain": domain.NAME}

async def handler(turn: Turn) -> Finished:
    return Finished({"got": turn.input})

config = BatonConfig(handler=handler, database_url=sys.argv[1])
app = Litestar([mine], plugins=[BatonPlugin(config)])
with TestClient(app) as client:
    print(client.get("/mine").json())
    reply = client.post("/v1/session", json={"n": 1}).json()
    print(reply["status"], reply["output"], reply["turn"])
    import baton
    print(baton.__file__)
"""


def _wheel(out: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(out)],
        check=True,
        timeout=300,
    )
    (wheel,) = out.glob("baton-*.whl")
    return wheel


def _fresh_venv(where: Path) -> Path:
    """A new environment with the wheel's dependencies visible (this run's site-packages,
    appended after its own: no network, and this checkout's editable `baton` is not there,
    since a path a .pth file adds is not searched for .pth files of its own)."""
    venv.create(where, with_pip=True)
    python = where / "bin" / "python"
    own = subprocess.run(
        [str(python), "-c", "import site; print(site.getsitepackages()[0])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(own) / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return python


def test_the_wheel_installs_one_package_and_runs_beside_an_app_with_its_own_api(
    tmp_path: Path,
) -> None:
    wheel = _wheel(tmp_path / "dist")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert tops == {
        "baton",
        wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info",
    }

    python = _fresh_venv(tmp_path / "venv")
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        timeout=300,
    )
    app_dir = tmp_path / "users-app"
    for package in ("api", "domain"):
        (app_dir / package).mkdir(parents=True)
        (app_dir / package / "__init__.py").write_text(f'NAME = "the application\'s {package}"\n')
    (app_dir / "main.py").write_text(USERS_APP)

    database = f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"
    baton = python.with_name("baton")  # the wheel's console script
    migrated = subprocess.run(
        [str(baton), "migrate", "--database-url", database],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr

    ran = subprocess.run(
        [str(python), "main.py", database],
        cwd=app_dir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    lines = ran.stdout.splitlines()
    assert lines[0] == "{'api': \"the application's api\", 'domain': \"the application's domain\"}"
    assert lines[1] == "finished {'got': {'n': 1}} 1"
    assert lines[2].startswith(str(tmp_path / "venv"))  # Baton from the wheel, not this checkout
