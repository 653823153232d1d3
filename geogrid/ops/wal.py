"""Continuous WAL archiving and point-in-time recovery for the private cluster.

``geogrid db up`` (:func:`ensure`) and ``geogrid db wal enable`` turn on PostgreSQL's own
archiving (``archive_mode``, ``archive_command`` copying each finished WAL segment to
``WAL_DIR/archive``, ``archive_timeout`` of 60 s so at most a minute of writes waits in an
unfinished segment), restart the cluster and take a base backup (``pg_basebackup``) into
``WAL_DIR/base``.
``geogrid db wal backup`` takes another (weekly from cron, say: replay from a recent base
is faster); ``geogrid db backup [--keep N]`` takes one too (:func:`after_backup`), keeping
the ``N`` newest base backups and the WAL they need, so the point-in-time window follows
the archives' retention. ``geogrid db restore --until TIME`` builds a **new data
directory** from the newest base backup finished before ``TIME``, lets PostgreSQL replay
the archived WAL up to ``TIME`` (``recovery_target_time``) and promotes it; the old data
directory is kept beside it (``pgdata.before-<time>``), never deleted.

WAL holds the database only: attachments are content-addressed files that are never
changed or deleted, so the home's file store already holds every file of any earlier
moment.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import psycopg

from geogrid.cluster import PrivateCluster, find_binaries, memory_options
from geogrid.errors import ConfigurationError, InvalidInput, NotFound
from geogrid.ops.backup import pg_connection, run_tool
from geogrid.settings import Settings

log = logging.getLogger(__name__)

INFO: Final = "geogrid-base.json"
#: Seconds after which a partly filled WAL segment is archived anyway.
ARCHIVE_TIMEOUT: Final = 60
_RECOVERY_KEYS: Final = ("restore_command", "recovery_target_time", "recovery_target_action")


@dataclass(frozen=True)
class BaseBackup:
    """A base backup in ``WAL_DIR/base/<name>``, finished at ``end`` (UTC)."""

    path: Path
    end: dt.datetime


def wal_dir(settings: Settings) -> Path:
    """``GEOGRID_WAL_DIR`` or ``GEOGRID_HOME/wal``."""
    return Path(settings.wal_dir or Path(settings.home) / "wal").absolute()


def _private(settings: Settings) -> PrivateCluster:
    if settings.database_url:
        raise ConfigurationError(
            "WAL archiving and point-in-time recovery are for the private cluster; with "
            "GEOGRID_DATABASE_URL set, configure them on that server"
        )
    return PrivateCluster(settings)


def _dsn(cluster: PrivateCluster) -> str:
    state = cluster.load_state()
    if state is None:
        raise ConfigurationError(f"no private cluster in {cluster.home}: run `geogrid db up`")
    return (f"host=127.0.0.1 port={state.port} user={state.user} password={state.password} "
            f"dbname={state.database} connect_timeout=10")  # fmt: skip


def enable(settings: Settings) -> BaseBackup:
    """Turn archiving on (restarting the cluster once) and take the first base backup."""
    cluster = _private(settings)
    cluster.start()
    folder = wal_dir(settings)
    archive = folder / "archive"
    if "'" in str(archive):
        raise InvalidInput(f"{archive}: the WAL folder's path must not contain a quote")
    archive.mkdir(parents=True, exist_ok=True)
    (folder / "base").mkdir(exist_ok=True)
    folder.chmod(0o700)
    cluster.give_to_server(folder)
    command = f"test ! -f '{archive}/%f' && cp '%p' '{archive}/%f'"
    with psycopg.connect(_dsn(cluster), autocommit=True) as conn:
        settings_now: dict[str, str] = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('archive_mode', 'archive_command', 'wal_level', 'archive_timeout')"
            ).fetchall()
        )
        wanted = {"archive_mode": "on", "archive_command": command, "wal_level": "replica",
                  "archive_timeout": str(ARCHIVE_TIMEOUT)}  # fmt: skip
        for name, value in wanted.items():
            conn.execute(f"ALTER SYSTEM SET {name} = '{value.replace(chr(39), chr(39) * 2)}'")
    restart = any(settings_now.get(k) != wanted[k] for k in ("archive_mode", "wal_level"))
    if restart:  # pg_ctl restart keeps the port and options (postmaster.opts)
        bins = find_binaries(settings)
        cluster.run_as_server([bins.tool("pg_ctl"), "restart", "-D", str(cluster.datadir),
                               "-m", "fast", "-w", "-t", "120", "-l", str(cluster.logfile)],
                              timeout=180)  # fmt: skip
    else:
        with psycopg.connect(_dsn(cluster), autocommit=True) as conn:
            conn.execute("SELECT pg_reload_conf()")
    return base_backup(settings)


def ensure(settings: Settings) -> BaseBackup | None:
    """What ``geogrid db up`` does on the private cluster: archiving on, and a base backup
    to replay from when there is none (the new one), so that ``db restore --until`` works
    on a fresh install; ``None`` when both were in place already."""
    if archiving(settings) and base_backups(settings):
        return None
    return enable(settings)


def after_backup(settings: Settings, keep: int | None) -> BaseBackup | None:
    """What ``geogrid db backup [--keep N]`` adds on an archiving private cluster: a new
    base backup, keeping the ``N`` newest and the WAL they need (the point-in-time window
    follows the archives' retention). ``None`` elsewhere (an external database, archiving
    off)."""
    if settings.database_url or not archiving(settings):
        return None
    return base_backup(settings, keep=keep)


def archiving(settings: Settings) -> bool:
    """Whether the running private cluster archives its WAL."""
    cluster = _private(settings)
    if not cluster.is_running():
        return False
    with psycopg.connect(_dsn(cluster)) as conn:
        row = conn.execute("SHOW archive_mode").fetchone()
    return bool(row and row[0] == "on")


def base_backup(settings: Settings, *, keep: int | None = None) -> BaseBackup:
    """A new base backup (``pg_basebackup``, tar, gzip, its WAL fetched alongside).

    ``keep``: afterwards keep only the ``keep`` newest base backups.
    """
    cluster = _private(settings)
    if not archiving(settings):
        raise ConfigurationError("WAL archiving is off: run `geogrid db wal enable` first")
    state = cluster.load_state()
    assert state is not None  # archiving() saw it running
    url = state.url()
    name = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = wal_dir(settings) / "base" / name
    args, env = pg_connection(url)
    args = args[:-2]  # no "-d database": pg_basebackup makes a replication connection
    run_tool([find_binaries(settings).tool("pg_basebackup"), "-D", str(target), "-Ft", "-z",
              "-X", "fetch", "--checkpoint=fast", *args], env, what="pg_basebackup")  # fmt: skip
    end = dt.datetime.now(dt.UTC)
    (target / INFO).write_text(json.dumps({"end": end.isoformat()}), encoding="utf-8")
    cluster.give_to_server(target)
    if keep is not None:
        prune(settings, keep)
    return BaseBackup(target, end)


def prune(settings: Settings, keep: int) -> list[Path]:
    """Keep the ``keep`` newest base backups and the WAL they need; the removed folders.

    Archived segments older than the oldest kept base backup's start are removed with
    ``pg_archivecleanup`` (PostgreSQL's own tool for this).
    """
    bases = base_backups(settings)
    doomed = bases[: max(len(bases) - keep, 0)]
    for old in doomed:
        shutil.rmtree(old.path)
    kept = bases[len(doomed) :]
    if doomed and kept:
        first = start_segment(kept[0].path)
        tool = find_binaries(settings).tool("pg_archivecleanup")
        archive = str(wal_dir(settings) / "archive")
        run_tool([tool, archive, first], {"LC_ALL": "C.UTF-8"}, what="pg_archivecleanup")
    return [b.path for b in doomed]


def start_segment(base: Path, segment_size: int = 16 * 2**20) -> str:
    """The WAL file a base backup starts in, from its ``backup_manifest``.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "backup_manifest").write_text(
    ...     '{"WAL-Ranges": [{"Timeline": 1, "Start-LSN": "0/5000028", "End-LSN": "0/5000100"}]}')
    >>> start_segment(d)
    '000000010000000000000005'
    """
    ranges = json.loads((base / "backup_manifest").read_text(encoding="utf-8"))["WAL-Ranges"]
    first = ranges[0]
    hi, lo = (int(part, 16) for part in first["Start-LSN"].split("/"))
    per_id = 2**32 // segment_size
    number = (hi * 2**32 + lo) // segment_size
    return f"{int(first['Timeline']):08X}{number // per_id:08X}{number % per_id:08X}"


def base_backups(settings: Settings) -> list[BaseBackup]:
    """The finished base backups, oldest first."""
    found = []
    root = wal_dir(settings) / "base"
    for info in sorted(root.glob(f"*/{INFO}")) if root.is_dir() else []:
        end = dt.datetime.fromisoformat(json.loads(info.read_text(encoding="utf-8"))["end"])
        found.append(BaseBackup(info.parent, end))
    return sorted(found, key=lambda b: b.end)


def switch_and_wait(dsn: str, *, timeout: float = 60) -> None:
    """Close the current WAL segment and wait until the archiver has copied it."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
        wanted = str(row[0]) if row else ""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = conn.execute("SELECT last_archived_wal, last_failed_wal "
                               "FROM pg_stat_archiver").fetchone()  # fmt: skip
            if got and got[0] and str(got[0])[:24] >= wanted:
                return
            time.sleep(0.2)
    raise ConfigurationError(f"the WAL segment {wanted} was not archived within {timeout:.0f} s "
                             "(see the PostgreSQL log)")  # fmt: skip


def restore_until(settings: Settings, until: dt.datetime) -> Path:
    """Point-in-time recovery of the private cluster to ``until`` (aware datetime).

    Returns the folder the previous data directory was moved to.

    Raises
    ------
    NotFound
        No base backup finished before ``until``.
    ConfigurationError
        PostgreSQL could not reach ``until``; the previous data directory is put back.
    """
    if until.tzinfo is None:
        raise InvalidInput("--until needs a time zone (or is read as local time by the command)")
    cluster = _private(settings)
    usable = [b for b in base_backups(settings) if b.end <= until]
    if not usable:
        raise NotFound(f"no base backup finished before {until.isoformat()}: point-in-time "
                       "recovery reaches back only to the oldest base backup")  # fmt: skip
    base = usable[-1]
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    fresh = cluster.home / f"pgdata.pitr-{stamp}"
    try:
        _build_datadir(fresh, base, wal_dir(settings) / "archive", until)
        cluster.give_to_server(fresh)
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    if cluster.is_running():
        if archiving(settings):
            switch_and_wait(_dsn(cluster))  # the last writes into the archive
        cluster.stop()
    before = cluster.home / f"pgdata.before-{stamp}"
    cluster.datadir.rename(before)
    fresh.rename(cluster.datadir)
    try:
        _start_and_promote(cluster)
    except ConfigurationError:
        cluster.stop()
        cluster.datadir.rename(cluster.home / f"pgdata.failed-{stamp}")
        before.rename(cluster.datadir)
        cluster.start()  # back as it was
        raise
    return before


def _build_datadir(fresh: Path, base: BaseBackup, archive: Path, until: dt.datetime) -> None:
    """A data directory from a base backup, set to replay the archive up to ``until``."""
    fresh.mkdir(mode=0o700)
    with tarfile.open(base.path / "base.tar.gz") as tar:
        tar.extractall(fresh, filter="data")
    if (base.path / "pg_wal.tar.gz").exists():  # --wal-method=stream puts it beside
        with tarfile.open(base.path / "pg_wal.tar.gz") as tar:
            tar.extractall(fresh / "pg_wal", filter="data")
    with (fresh / "postgresql.auto.conf").open("a") as fh:
        fh.write(
            "\n# geogrid point-in-time recovery (removed after promotion)\n"
            f'restore_command = \'cp "{archive}/%f" "%p"\'\n'
            f"recovery_target_time = '{until.isoformat()}'\n"
            "recovery_target_action = 'promote'\n"
        )
    (fresh / "recovery.signal").touch()
    fresh.chmod(0o700)


def _start_and_promote(cluster: PrivateCluster, timeout: float = 300) -> None:
    state = cluster.load_state()
    assert state is not None
    bins = find_binaries(cluster.settings)
    cluster.logfile.touch()
    cluster.give_to_server(cluster.logfile)
    proc = cluster.run_as_server(
        [bins.tool("pg_ctl"), "start", "-D", str(cluster.datadir), "-w", "-t", "120",
         "-l", str(cluster.logfile), "-o", f"-p {state.port} {memory_options()}"],
        check=False, timeout=timeout,
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    while proc.returncode == 0 and time.monotonic() < deadline:
        try:
            with psycopg.connect(_dsn(cluster), autocommit=True) as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                if row and not row[0]:
                    for key in _RECOVERY_KEYS:
                        conn.execute(f"ALTER SYSTEM RESET {key}")
                    conn.execute("SELECT pg_reload_conf()")
                    return
        except psycopg.OperationalError:
            if not cluster.is_running():
                break
        time.sleep(0.3)
    tail = _log_tail(cluster.logfile)
    raise ConfigurationError(f"point-in-time recovery failed: {tail} (log: {cluster.logfile})")


def _log_tail(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    for ln in reversed(lines[-30:]):
        if "FATAL" in ln or "recovery" in ln:
            return ln.strip()
    return lines[-1].strip() if lines else "no log"
