"""The layering is a test, not a wish: api -> infra -> domain, and a pure domain."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def test_the_import_contracts_hold() -> None:
    result = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout


def test_the_contracts_catch_a_domain_module_that_imports_the_database(tmp_path: Path) -> None:
    """Proves the contract can fail: a copy of the tree with one bad import breaks it."""
    for package in ("domain", "infra", "api"):
        (tmp_path / package).symlink_to(ROOT / package, target_is_directory=True)
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    # Shadow the real domain with one that has an illegal import, in the copy only.
    (tmp_path / "domain").unlink()
    (tmp_path / "domain").mkdir()
    (tmp_path / "domain" / "__init__.py").write_text("import sqlalchemy\nimport api\n")
    result = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(tmp_path), "PATH": ""},
    )
    assert result.returncode != 0
    assert "Contracts: 0 kept, 2 broken." in result.stdout, result.stdout + result.stderr
