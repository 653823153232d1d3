"""Continuous WAL archiving and ``geogrid db restore --until``: a private cluster recovered
to a moment between two writes."""

from __future__ import annotations

import datetime as dt
import shutil
import time
from collections.abc import Iterator

import psycopg
import pytest

from geogrid.cluster import PrivateCluster
from geogrid.errors import ConfigurationError, NotFound
from geogrid.ops import wal
from geogrid.ops.restore import libpq_dsn
from geogrid.settings import Settings
from tests.conftest import make_home
from tests.ops_support import geogrid_env, run_cli


@pytest.fixture(scope="module")
def settings() -> Iterator[Settings]:
    """A throwaway private cluster's settings (stopped and removed afterwards)."""
    home = make_home("geogrid-ops-pitr-")
    settings = Settings(home=home, database_url=None, cluster_fsync=False)
    try:
        yield settings
    finally:
        PrivateCluster(settings).stop()
        shutil.rmtree(home, ignore_errors=True)


def _notes(settings: Settings) -> list[str]:
    url = libpq_dsn(PrivateCluster(settings).url())
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT note FROM pitr_probe ORDER BY note")]


def test_restore_until_a_moment_between_two_writes(settings: Settings) -> None:
    env = {"home": str(settings.home), "cluster_fsync": "false"}
    with geogrid_env(**env):
        assert "WAL archiving on" in run_cli("db", "wal", "enable")
    url = libpq_dsn(PrivateCluster(settings).url())
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SHOW archive_mode").fetchone() == ("on",)
        conn.execute("CREATE TABLE pitr_probe (note text)")
        conn.execute("INSERT INTO pitr_probe VALUES ('first')")
        time.sleep(0.5)
        row = conn.execute("SELECT clock_timestamp()").fetchone()
        assert row is not None
        moment: dt.datetime = row[0]
        time.sleep(0.5)
        conn.execute("INSERT INTO pitr_probe VALUES ('second')")
    assert _notes(settings) == ["first", "second"]

    with geogrid_env(**env):
        text = run_cli("db", "restore", "--until", moment.isoformat())
    assert "recovered" in text
    assert _notes(settings) == ["first"]
    home = settings.home
    kept = sorted(home.glob("pgdata.before-*"))
    assert len(kept) == 1 and (kept[0] / "PG_VERSION").exists()
    # the recovered cluster takes writes and keeps archiving
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO pitr_probe VALUES ('third')")
        assert conn.execute("SHOW archive_mode").fetchone() == ("on",)
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
    assert _notes(settings) == ["first", "third"]

    # a newer base backup; --keep 1 drops the first one and the WAL only it needed
    with geogrid_env(**env):
        assert "base backup" in run_cli("db", "wal", "backup", "--keep", "1")
    (base,) = wal.base_backups(settings)
    first = wal.start_segment(base.path)
    segments = [p.name for p in (wal.wal_dir(settings) / "archive").iterdir()
                if len(p.name) == 24]  # fmt: skip
    assert segments and min(s[8:] for s in segments) >= first[8:]


def test_until_before_every_base_backup_is_refused(settings: Settings) -> None:
    with pytest.raises(NotFound, match="no base backup finished before"):
        wal.restore_until(settings, dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    external = settings.model_copy(update={"database_url": "postgresql://u:p@127.0.0.1:1/x"})
    with pytest.raises(ConfigurationError, match="private cluster"):
        wal.restore_until(external, dt.datetime.now(dt.UTC))
    with geogrid_env(home=str(settings.home)):
        assert "expected a time" in run_cli("db", "restore", "--until", "yesterday", code=1)
        assert "not both" in run_cli("db", "restore", "x.tar", "--until", "2026-01-01", code=1)
