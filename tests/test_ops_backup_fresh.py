"""A fresh install (issue 15 §1): ``geogrid db up`` archives the WAL so that ``db restore
--until`` works with no other step; ``db backup --keep N`` keeps N base backups too; a
migrated cluster with no data is empty for ``db restore`` and one town is not."""

from __future__ import annotations

import datetime as dt
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from geogrid.cluster import PrivateCluster
from geogrid.ops import wal
from geogrid.ops.restore import SEEDED, data_rows, libpq_dsn
from geogrid.settings import Settings
from tests.conftest import make_home
from tests.ops_support import geogrid_env, run_cli

#: One row of data: a town (the admin area every other row hangs from).
_TOWN = "INSERT INTO admin_areas (code, level, name) VALUES (%s, 'town', '新镇')"


@pytest.fixture(scope="module")
def fresh() -> Iterator[tuple[Settings, dict[str, str]]]:
    """``geogrid db up`` in a new home: settings and the CLI environment."""
    home = make_home("geogrid-ops-fresh-")
    settings = Settings(home=home, database_url=None, cluster_fsync=False)
    env = {"home": str(home), "cluster_fsync": "false"}
    try:
        with geogrid_env(**env):
            out = run_cli("db", "up")
        assert "WAL archiving on" in out and "schema up to date" in out
        yield settings, env
    finally:
        PrivateCluster(settings).stop()
        shutil.rmtree(home, ignore_errors=True)


def _towns(settings: Settings) -> list[str]:
    with psycopg.connect(libpq_dsn(PrivateCluster(settings).url())) as conn:
        return [r[0] for r in conn.execute("SELECT code FROM admin_areas ORDER BY 1")]


def _write(settings: Settings, statement: str, *args: str) -> None:
    with psycopg.connect(libpq_dsn(PrivateCluster(settings).url()), autocommit=True) as conn:
        conn.execute(statement, args)


def test_db_up_archives_the_wal_under_the_home_with_a_base_backup(
    fresh: tuple[Settings, dict[str, str]],
) -> None:
    settings, env = fresh
    assert wal.archiving(settings)
    assert wal.wal_dir(settings) == Path(settings.home).absolute() / "wal"
    assert len(wal.base_backups(settings)) == 1
    with geogrid_env(**env):  # a second `db up` neither restarts nor takes another
        assert "WAL archiving on" not in run_cli("db", "up")
    assert len(wal.base_backups(settings)) == 1


def test_restore_until_works_right_after_db_up(fresh: tuple[Settings, dict[str, str]]) -> None:
    settings, env = fresh
    _write(settings, _TOWN, "420117101000")
    time.sleep(0.3)
    with psycopg.connect(libpq_dsn(PrivateCluster(settings).url())) as conn:
        row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    moment: dt.datetime = row[0]
    time.sleep(0.3)
    _write(settings, _TOWN, "420117102000")
    assert _towns(settings) == ["420117101000", "420117102000"]
    with geogrid_env(**env):
        assert "recovered" in run_cli("db", "restore", "--until", moment.isoformat())
    assert _towns(settings) == ["420117101000"]
    assert wal.archiving(settings)  # and it keeps archiving


def test_backup_keep_n_keeps_n_base_backups_and_their_wal(
    fresh: tuple[Settings, dict[str, str]], tmp_path: Path
) -> None:
    settings, env = fresh
    with geogrid_env(**env):
        for i in range(2):
            _write(settings, _TOWN, f"42011711{i}000")
            out = run_cli("db", "backup", "--unencrypted", "--keep", "2", "-o", str(tmp_path))
            assert "for `db restore --until` (" in out
        assert len(wal.base_backups(settings)) == 2
        out = run_cli("db", "backup", "--unencrypted", "--keep", "1", "-o", str(tmp_path))
        assert "(1 kept)" in out
    (base,) = wal.base_backups(settings)
    first = wal.start_segment(base.path)
    segments = [p.name for p in (wal.wal_dir(settings) / "archive").iterdir()
                if len(p.name) == 24]  # fmt: skip
    assert segments and min(s[8:] for s in segments) >= first[8:]
    assert len(list(tmp_path.glob("geogrid-*"))) == 1  # the archives' retention alike


def test_a_migrated_cluster_without_data_is_empty_and_one_town_is_not(
    fresh: tuple[Settings, dict[str, str]], tmp_path: Path
) -> None:
    settings, env = fresh
    url = PrivateCluster(settings).url()
    _write(settings, _TOWN, "420117120000")
    with geogrid_env(**env):
        run_cli("db", "backup", "--unencrypted", "-o", str(tmp_path / "one.tar"))
    # one town: refused without --force, naming the table
    assert data_rows(url) == ["admin_areas"]
    with geogrid_env(**env):
        text = run_cli("db", "restore", str(tmp_path / "one.tar"), code=1)
    assert "not empty" in text and "admin_areas" in text and "--force" in text
    # the schema (any revision) and the reference rows migrations write are not data
    _write(settings, "DELETE FROM admin_areas")
    assert data_rows(url) == []
    populated = set(data_rows(url, seeded=frozenset()))
    assert populated and populated <= SEEDED
    with geogrid_env(**env):
        assert "restored one.tar" in run_cli("db", "restore", str(tmp_path / "one.tar"))
    assert "420117120000" in _towns(settings)
    with geogrid_env(**env):  # now it holds data: --force replaces it
        run_cli("db", "restore", str(tmp_path / "one.tar"), code=1)
        run_cli("db", "restore", str(tmp_path / "one.tar"), "--force")
