"""``geogrid db backup``: the database and the files of ``GEOGRID_HOME`` in one archive.

The database is dumped first (``pg_dump --format=custom``: one consistent snapshot, taken
without stopping anything), then the file store is copied. Stored files are named by
their hash and never change, so every file a row of the dump refers to is in the archive
(a file uploaded during the backup may be too; that is harmless). See
:mod:`geogrid.ops.archive` for the format.

Keys: the data key file (``data.key``, which decrypts ID numbers and phones) and the
signing key (``secret.key``) go into the archive only when it is encrypted with the
backup key. Without a backup key the command refuses, unless the operator says
``--unencrypted``: then the archive is written without the key files (the command lists
what was left out), and whoever restores it must put ``data.key`` back by hand. An
archive that holds personal data is never written in the clear by default.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from sqlalchemy.engine import make_url

import geogrid
from geogrid import store
from geogrid.cluster import find_binaries
from geogrid.errors import ConfigurationError, InvalidInput
from geogrid.files import STORE_DIR
from geogrid.ops import archive
from geogrid.settings import Settings

log = logging.getLogger(__name__)

#: Key files under ``GEOGRID_HOME`` (people crypto's data key, the signing key).
KEY_FILES: Final = ("data.key", "secret.key")
#: Archive names geogrid writes (and the only files ``--keep`` may delete).
NAME_RE: Final = re.compile(r"geogrid-backup-\d{8}T\d{12}Z\.tar(\.enc)?")


@dataclass(frozen=True)
class BackupResult:
    """What ``geogrid db backup`` wrote."""

    path: Path
    manifest: dict[str, Any]
    keys_excluded: list[str] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)


def default_dir(settings: Settings) -> Path:
    """Where archives go: ``GEOGRID_BACKUP_DIR`` or ``GEOGRID_HOME/backups``."""
    return Path(settings.backup_dir or Path(settings.home) / "backups")


def pg_connection(url: str) -> tuple[list[str], dict[str, str]]:
    """libpq arguments (``-h -p -U -d``) and environment (the password) for a client tool.

    The password goes through ``PGPASSWORD``, never the command line (``ps`` shows that).
    """
    u = make_url(store.normalise_url(url))
    args = ["-h", u.host or "127.0.0.1", "-p", str(u.port or 5432), "-U", u.username or "",
            "-d", u.database or ""]  # fmt: skip
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8",
           "PGCONNECT_TIMEOUT": "10"}  # fmt: skip
    if u.password:
        env["PGPASSWORD"] = str(u.password)
    return args, env


def client_tool(settings: Settings, name: str) -> str:
    """``pg_dump``/``pg_restore``/…: the private cluster's own, else the one on ``PATH``
    (an external database may be served from a machine with the client tools only)."""
    try:
        return find_binaries(settings).tool(name)
    except ConfigurationError:
        found = shutil.which(name)
        if found is None:
            raise ConfigurationError(
                f"{name} not found: install the PostgreSQL client tools "
                "(`apt-get install postgresql-client`) of the server's major version or newer"
            ) from None
        return found


def run_tool(args: list[str], env: dict[str, str], *, what: str) -> None:
    """Run a PostgreSQL client tool; its last error line on failure."""
    proc = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        raise ConfigurationError(f"{what} failed: {lines[-1] if lines else 'no output'}")


def _archive_path(settings: Settings, output: Path | None, encrypted: bool) -> Path:
    now = dt.datetime.now(dt.UTC)
    name = f"geogrid-backup-{now:%Y%m%dT%H%M%S%f}Z.tar" + (".enc" if encrypted else "")
    if output is None:
        return default_dir(settings) / name
    output = Path(output)
    if output.is_dir() or not output.name.endswith((".tar", ".tar.enc")):
        return output / name  # a folder (created when missing)
    return output


def create_backup(
    settings: Settings,
    *,
    output: Path | None = None,
    keep: int | None = None,
    unencrypted: bool = False,
) -> BackupResult:
    """Dump the database and the home's files into one archive.

    Parameters
    ----------
    settings
        The database (``database_url`` or the private cluster, started if needed), the home,
        the backup key and folder.
    output
        A file name (ending ``.tar`` or ``.tar.enc``), else a folder for a generated name;
        default ``default_dir(settings)``.
    keep
        Afterwards keep only the ``keep`` newest archives of the folder (geogrid's own
        names only; other files are never touched).
    unencrypted
        Allow an unencrypted archive when no backup key is configured; the key files
        are then left out.

    Raises
    ------
    ConfigurationError
        No backup key and not ``unencrypted``; ``pg_dump`` failing.
    """
    if keep is not None and keep < 1:
        raise InvalidInput("--keep must be at least 1")
    key = archive.backup_key(settings)
    if key is None and not unencrypted:
        raise ConfigurationError(
            "no backup key: set GEOGRID_BACKUP_KEY (make one with `geogrid db backup-key` and "
            "keep a copy off this server) so that the archive and the key files in it are "
            "encrypted, or pass --unencrypted to write an archive without the key files"
        )
    home = Path(settings.home)
    url = store.database_url(settings)
    target = _archive_path(settings, output, key is not None)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    with tempfile.TemporaryDirectory(prefix="geogrid-backup-") as tmp:
        dump = Path(tmp) / "geogrid.dump"
        args, env = pg_connection(url)
        run_tool([client_tool(settings, "pg_dump"), "--format=custom",
                  "--file", str(dump), *args], env, what="pg_dump")  # fmt: skip
        meta = _database_facts(url)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as raw:
                out: IO[bytes] = archive.EncryptingWriter(raw, key) if key else raw  # type: ignore[assignment]
                with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                    writer = archive.ArchiveWriter(tar)
                    writer.add_file(archive.DUMP_MEMBER, dump)
                    writer.add_tree(f"home/{STORE_DIR}/", home / STORE_DIR)
                    excluded = _add_keys(writer, home, encrypted=key is not None)
                    if settings.photo_dir is not None:
                        writer.add_tree("photos/", Path(settings.photo_dir))
                    now = dt.datetime.now(dt.UTC)
                    manifest = writer.finish({
                        "format": archive.FORMAT,
                        "format_version": archive.FORMAT_VERSION,
                        "created": now.isoformat(timespec="seconds"),
                        "created_epoch": int(now.timestamp()),
                        "geogrid_version": geogrid.__version__,
                        **meta,
                        "encrypted": key is not None,
                        "backup_key_id": archive.key_id(key).hex() if key else None,
                        "keys_excluded": excluded,
                    })  # fmt: skip
                if key:
                    out.close()
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
    removed = prune(target.parent, keep) if keep else []
    log.info("backup written to %s (%d members)", target, len(manifest["members"]))
    return BackupResult(target, manifest, excluded, removed)


def _add_keys(writer: archive.ArchiveWriter, home: Path, *, encrypted: bool) -> list[str]:
    present = [name for name in KEY_FILES if (home / name).is_file()]
    if not encrypted:
        return present
    for name in present:
        writer.add_file(f"home/{name}", home / name)
    return []


def _database_facts(url: str) -> dict[str, Any]:
    engine = store.make_engine(url)
    try:
        revision = store.current_revision(engine)
        with engine.connect() as conn:
            version = conn.exec_driver_sql("SHOW server_version").scalar_one()
    finally:
        engine.dispose()
    return {"schema_revision": revision, "postgresql": str(version)}


def prune(folder: Path, keep: int) -> list[Path]:
    """Delete all but the ``keep`` newest geogrid archives in ``folder``; the deleted paths.

    Only files named as geogrid names archives (:data:`NAME_RE`) that also look like one
    (encrypted header or tar) are candidates; anything else in the folder stays.
    """
    ours = sorted(
        p for p in folder.iterdir()
        if NAME_RE.fullmatch(p.name) and p.is_file() and not p.is_symlink()
        and archive.looks_like_archive(p)
    )  # fmt: skip
    # the name's timestamp orders them (UTC, fixed width); newest last
    doomed = ours[: max(len(ours) - keep, 0)]
    for path in doomed:
        path.unlink()
    return doomed


def timer_units(settings: Settings, *, keep: int, at: str, python: str) -> dict[str, str]:
    """A systemd service and timer that run ``geogrid db backup --keep N`` daily at ``at``,
    then the nightly chores (``geogrid db maintain``).

    >>> units = timer_units(Settings(home="/var/lib/geogrid"), keep=14, at="02:30",
    ...                     python="/opt/geogrid/.venv/bin/python")
    >>> "OnCalendar=*-*-* 02:30:00" in units["geogrid-backup.timer"]
    True
    """
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", at):
        raise InvalidInput(f"--at {at!r}: expected HH:MM (24-hour clock)")
    env = [f"GEOGRID_HOME={Path(settings.home).absolute()}"]
    for name, value in (("GEOGRID_BACKUP_DIR", settings.backup_dir),
                        ("GEOGRID_BACKUP_KEY_FILE", settings.backup_key_file)):  # fmt: skip
        if value is not None:
            env.append(f"{name}={Path(value).absolute()}")
    environment = "".join(f"Environment={e}\n" for e in env)
    service = (
        "[Unit]\nDescription=geogrid backup (database and files)\n"
        "After=network.target\n\n[Service]\nType=oneshot\n"
        f"{environment}ExecStart={python} -m geogrid db backup --keep {keep}\n"
        f"ExecStartPost={python} -m geogrid db maintain\n"
        "Nice=10\nIOSchedulingClass=idle\n"
    )
    timer = (
        "[Unit]\nDescription=Daily geogrid backup\n\n[Timer]\n"
        f"OnCalendar=*-*-* {at}:00\nPersistent=true\nRandomizedDelaySec=300\n\n"
        "[Install]\nWantedBy=timers.target\n"
    )
    return {"geogrid-backup.service": service, "geogrid-backup.timer": timer}


def write_units(units: dict[str, str], folder: Path) -> list[Path]:
    """Write the unit files into ``folder`` (``/etc/systemd/system``); their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in units.items():
        path = folder / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths
