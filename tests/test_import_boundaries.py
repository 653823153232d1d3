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
