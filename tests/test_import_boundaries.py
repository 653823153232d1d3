"""The package boundaries of ARCHITECTURE.md, checked in fresh interpreters."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

DB_AND_WEB = ("sqlalchemy", "geoalchemy2", "psycopg", "alembic", "fastapi", "starlette")


def _imported(package: str) -> set[str]:
    code = (
        f"import importlib, json, pkgutil, sys; import {package}; "
        f"[importlib.import_module(m.name) for m in pkgutil.walk_packages("
        f"{package}.__path__, '{package}.') "
        "if not m.name.endswith('__main__') and '.migrations' not in m.name]; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(proc.stdout))


def test_partition_imports_no_database_or_web() -> None:
    leaked = _imported("partition") & set(DB_AND_WEB)
    assert leaked == set(), f"partition imports {leaked}"


@pytest.mark.parametrize("package", ["geogrid", "partition", "tiles"])
def test_core_packages_import_no_fastapi(package: str) -> None:
    leaked = _imported(package) & {"fastapi"}
    assert leaked == set(), f"{package} imports {leaked}"


#: package → the packages above it (ARCHITECTURE.md: api → tiles → geogrid → partition)
ABOVE = {"partition": {"geogrid", "tiles", "api"}, "geogrid": {"tiles", "api"}, "tiles": {"api"}}
#: the agreed exceptions: the one error hierarchy (geogrid.errors, a leaf module) is shared
#: by every package, and the command line (geogrid/cli) starts the web app
ALLOWED = {("partition", "geogrid.errors"), ("geogrid/cli", "api")}


@pytest.mark.parametrize("package", sorted(ABOVE))
def test_no_package_imports_one_above_it(package: str) -> None:
    """Also imports inside functions (lazy ones), which the fresh interpreter cannot see."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / package
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            rel = path.relative_to(root)
            found += [
                f"{rel}:{node.lineno} {n}"
                for n in names
                if n.split(".")[0] in ABOVE[package]
                and (package, n) not in ALLOWED
                and (f"{package}/{rel.parts[0]}", n.split(".")[0]) not in ALLOWED
            ]
    assert found == [], f"{package} imports from above it: {found}"
