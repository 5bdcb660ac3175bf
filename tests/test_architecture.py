"""The layering is a test, not a wish: api -> infra -> domain, and a pure domain."""

import ast
import statistics
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
    assert "Contracts: 3 kept, 0 broken." in result.stdout


def lint_a_copy_with(tmp_path: Path, package: str, module: str, source: str) -> str:
    """lint-imports over a copy of the tree in which `package` has one more module."""
    (tmp_path / "baton").mkdir()
    (tmp_path / "baton" / "__init__.py").symlink_to(ROOT / "baton" / "__init__.py")
    for name in ("domain", "infra", "api"):
        if name == package:
            (tmp_path / "baton" / name).mkdir()
            for child in (ROOT / name).iterdir():
                (tmp_path / "baton" / name / child.name).symlink_to(child)
        else:
            (tmp_path / "baton" / name).symlink_to(ROOT / name, target_is_directory=True)
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    (tmp_path / "baton" / package / f"{module}.py").write_text(source)
    result = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(tmp_path), "PATH": ""},
    )
    assert result.returncode != 0, result.stdout + result.stderr
    return result.stdout


def test_the_contracts_catch_a_domain_module_that_imports_the_database(tmp_path: Path) -> None:
    """Proves the contracts can fail: a domain module reaching for the database and the API
    breaks the layers and the domain's purity."""
    out = lint_a_copy_with(tmp_path, "domain", "rogue", "import sqlalchemy\nimport baton.api\n")
    assert "Contracts: 1 kept, 2 broken." in out, out


def test_the_contracts_catch_an_api_module_that_queries_the_database_itself(
    tmp_path: Path,
) -> None:
    out = lint_a_copy_with(tmp_path, "api", "rogue", "import sqlalchemy\n")
    assert "Contracts: 2 kept, 1 broken." in out, out
    assert "baton.api is not allowed to import sqlalchemy" in out


def _sizes() -> tuple[dict[str, int], list[int]]:
    """Lines per module, and lines per function, of domain/, infra/ and api/."""
    modules: dict[str, int] = {}
    functions: list[int] = []
    for package in ("domain", "infra", "api"):
        for path in sorted((ROOT / package).rglob("*.py")):
            text = path.read_text()
            modules[str(path.relative_to(ROOT))] = len(text.splitlines())
            functions += [
                node.end_lineno - node.lineno + 1
                for node in ast.walk(ast.parse(text))
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                and node.end_lineno is not None
            ]
    return modules, functions


def test_modules_and_functions_stay_small() -> None:
    """shared/ARCHITECTURE.md's targets: no module over 300 lines, a module median of at
    most 150, a function median of at most 10."""
    modules, functions = _sizes()
    assert {path: lines for path, lines in modules.items() if lines > 300} == {}
    assert statistics.median(modules.values()) <= 150
    assert statistics.median(functions) <= 10


TOP_LEVEL = {"domain", "infra", "api"}


def _top_level_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = (
            [alias.name for alias in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom) and node.level == 0
            else []
        )
        found += [
            f"{path.relative_to(ROOT)}:{node.lineno} {name}"
            for name in names
            if name.split(".")[0] in TOP_LEVEL
        ]
    return found


def test_nothing_imports_the_folders_by_their_top_level_names() -> None:
    """Installed, the folders are baton.domain, baton.infra and baton.api only. In the
    repository `import infra` would still work (the root is on the path) and load a second
    copy of every module, with classes unequal to baton.infra's: so nothing may."""
    sources = [
        path
        for folder in ("domain", "infra", "api", "tests", "bench", "migrations")
        for path in (ROOT / folder).rglob("*.py")
    ]
    assert len(sources) > 200
    assert [found for path in sources for found in _top_level_imports(path)] == []
