"""Helpers of the operations tests (backups, restore, upgrades): fingerprints and the CLI."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from geogrid.cli import build_app
from geogrid.ops.restore import libpq_dsn

#: A fixed backup key for the tests (base64 of 32 bytes).
BACKUP_KEY = base64.b64encode(hashlib.sha256(b"geogrid test backup key").digest()).decode()


def fingerprint(url: str) -> dict[str, tuple[int, str]]:
    """Every table of ``public`` (PostGIS' left out): row count and md5 of its ordered rows;
    every sequence: its last value."""
    out: dict[str, tuple[int, str]] = {}
    with psycopg.connect(libpq_dsn(url)) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'spatial_ref_sys' ORDER BY 1"
            )
        ]
        for table in tables:
            row = conn.execute(
                f"SELECT count(*), md5(coalesce(string_agg(x, E'\\n' ORDER BY x), '')) "
                f'FROM (SELECT t::text AS x FROM "{table}" t) s'
            ).fetchone()
            assert row is not None
            out[table] = (int(row[0]), str(row[1]))
        for (seq,) in conn.execute(
            "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public' ORDER BY 1"
        ).fetchall():
            value = conn.execute(f'SELECT last_value, is_called FROM "{seq}"').fetchone()
            assert value is not None
            out[f"sequence {seq}"] = (int(value[0]), str(value[1]))
    return out


def tree_hashes(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``root``."""
    if not root.is_dir():
        return {}
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@contextmanager
def geogrid_env(**env: str | None) -> Iterator[None]:
    """Set ``GEOGRID_*`` variables (``None``: unset) for in-process CLI runs; all others
    that were set are removed for the duration and restored afterwards."""
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("GEOGRID_") and k != "GEOGRID_TEST_TMP"]:
            mp.delenv(key)
        for key, value in env.items():
            if value is not None:
                mp.setenv(f"GEOGRID_{key.upper()}", value)
        yield


def run_cli(*args: str, code: int = 0) -> str:
    """Run ``geogrid`` in process; assert its exit status; stdout and stderr together."""
    result = CliRunner().invoke(build_app(), list(args))
    output = result.output  # click 8.2+: stdout and stderr interleaved
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        output += f"\nerror: {result.exception}"  # what `geogrid` prints as its one line
    assert result.exit_code == code, (args, output, result.exception)
    return output
