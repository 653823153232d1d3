"""``geogrid db backup|restore|upgrade|check|wal``: running geogrid for years.

Registered on the ``db`` command group by :mod:`geogrid.cli.db`.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

import typer
from rich.console import Console

from geogrid import store
from geogrid.errors import InvalidInput
from geogrid.settings import Settings

console = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

wal_app = typer.Typer(
    help="Continuous WAL archiving of the private cluster (point-in-time recovery).",
    no_args_is_help=True,
)


def backup(
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Archive file, or a folder (default GEOGRID_BACKUP_DIR)."
    ),
    keep: int | None = typer.Option(
        None,
        "--keep",
        min=1,
        help="Keep only the N newest archives of the folder (and base backups for --until).",
    ),
    unencrypted: bool = typer.Option(
        False,
        "--unencrypted",
        help="Without a backup key: write the archive in the clear, leaving the key files out.",
    ),
) -> None:
    """Back up the database and GEOGRID_HOME's files (attachments, keys) into one archive.

    Encrypted with GEOGRID_BACKUP_KEY; without a key only with --unencrypted, and then the
    key files (data.key, secret.key) are left out. Daily: `geogrid db backup --keep 14`
    from cron, or the systemd timer `geogrid db backup-timer` writes.
    """
    from geogrid.ops.backup import create_backup

    with console.status("backing up"):
        result = create_backup(Settings(), output=output, keep=keep, unencrypted=unencrypted)
    m = result.manifest
    size = result.path.stat().st_size
    state = "encrypted" if m["encrypted"] else "NOT encrypted"
    console.print(
        f"backup written: {result.path} ({size:,} bytes, {len(m['members'])} members, {state}, "
        f"schema {m['schema_revision']})"
    )
    if result.keys_excluded:
        err.print(
            f"warning: key files left out (no backup key): {', '.join(result.keys_excluded)}. "
            "Keep a copy of them somewhere safe: without data.key the ID numbers and phones "
            "in this backup cannot be read."
        )
    from geogrid.people.crypto import ENV_VAR

    if os.environ.get(ENV_VAR):
        err.print(f"note: the data key comes from {ENV_VAR}, so no archive holds it: keep it "
                  "safe with the backup key")  # fmt: skip
    for path in result.removed:
        console.print(f"removed old backup {path.name} (--keep {keep})")
    from geogrid.ops.wal import after_backup, base_backups

    with console.status("taking a base backup for point-in-time recovery"):
        base = after_backup(Settings(), keep)
    if base is not None:
        kept = len(base_backups(Settings()))
        console.print(f"base backup {base.path.name} for `db restore --until` ({kept} kept)")


def backup_key() -> None:
    """Print a new random backup key (base64 of 32 bytes) for GEOGRID_BACKUP_KEY."""
    from geogrid.ops.archive import new_key

    typer.echo(new_key())


def backup_timer(
    keep: int = typer.Option(14, "--keep", min=1, help="Archives kept."),
    at: str = typer.Option("02:30", "--at", help="Daily time, HH:MM."),
    folder: Path = typer.Option(
        Path("/etc/systemd/system"), "--dir", help="Where to write the unit files."
    ),
) -> None:
    """Write a systemd service and timer running `geogrid db backup --keep N` daily."""
    from geogrid.ops.backup import timer_units, write_units

    units = timer_units(Settings(), keep=keep, at=at, python=sys.executable)
    for path in write_units(units, folder):
        console.print(f"wrote {path}")
    console.print("enable it with: systemctl daemon-reload && "
                  "systemctl enable --now geogrid-backup.timer")  # fmt: skip


def _parse_time(value: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(
            f"--until {value!r}: expected a time like 2026-11-30T14:05:00+08:00"
        ) from None
    return moment if moment.tzinfo else moment.astimezone()  # naive: this machine's time


def restore(
    archive: Path | None = typer.Argument(None, help="The archive `geogrid db backup` wrote."),
    force: bool = typer.Option(
        False, "--force", help="Replace a database that is not empty, and differing key files."
    ),
    until: str | None = typer.Option(
        None,
        "--until",
        help="Point-in-time recovery of the private cluster to this time "
        "(ISO 8601; without a zone, this machine's time) from the WAL archive.",
    ),
) -> None:
    """Restore a backup archive (every hash checked first) into an empty database.

    With --until TIME instead: rebuild the private cluster as it was at TIME from the
    newest base backup and the archived WAL (the current data folder is kept aside).
    """
    settings = Settings()
    if until is not None:
        if archive is not None:
            raise InvalidInput("give an ARCHIVE or --until, not both")
        from geogrid.ops.wal import restore_until

        moment = _parse_time(until)
        with console.status(f"recovering the cluster to {moment.isoformat()}"):
            before = restore_until(settings, moment)
        console.print(f"cluster recovered to {moment.isoformat()}; the previous data folder "
                      f"is kept at {before}")  # fmt: skip
        return
    if archive is None:
        raise InvalidInput("name the ARCHIVE to restore (or --until TIME)")
    from geogrid.ops.restore import restore_backup

    with console.status("checking and restoring"):
        result = restore_backup(settings, archive, force=force)
    m = result.manifest
    console.print(f"restored {archive.name} (made {m['created']}, schema {m['schema_revision']}):"
                  f" database and {result.files} files")  # fmt: skip
    if result.keys_missing:
        err.print(
            f"warning: the archive holds no key files ({', '.join(result.keys_missing)}): put "
            f"data.key back into {settings.home} (mode 0600) before serving, or the ID "
            "numbers and phones cannot be read"
        )
    if result.photos_to is not None and settings.photo_dir is None:
        console.print(f"staff photos restored to {result.photos_to}: set GEOGRID_PHOTO_DIR")
    if result.behind_head:
        console.print("the schema is older than this geogrid: run `geogrid db upgrade`")


def upgrade(
    no_backup: bool = typer.Option(False, "--no-backup", help="Skip the backup (not advised)."),
    unencrypted: bool = typer.Option(
        False, "--unencrypted", help="Allow the backup without a backup key (key files left out)."
    ),
) -> None:
    """Back up, apply every pending migration in one transaction, report what changed."""
    from geogrid.ops.upgrade import upgrade as run

    with console.status("upgrading"):
        report = run(Settings(), backup=not no_backup, unencrypted=unencrypted)
    if not report.revisions:
        console.print(f"schema already at the newest revision ({report.after})")
        return
    if report.backup is not None:
        console.print(f"backup first: {report.backup.path}")
    console.print(f"schema {report.before or 'empty'} -> {report.after}:")
    for rev, summary in report.revisions:
        console.print(f"  {rev}  {summary}")
    if report.tables_added:
        console.print(f"tables added: {', '.join(report.tables_added)}")
    if report.tables_removed:
        console.print(f"tables removed: {', '.join(report.tables_removed)}")
    for table, notes in report.tables_changed.items():
        console.print(f"table {table} changed: {', '.join(notes)}")


def check() -> None:
    """Check that the schema matches the code and the audit chain is intact (exit 1 if not).

    Warnings only (rows in a DEFAULT partition): exit 2.
    """
    from geogrid.ops.check import run_checks

    url = store.database_url(Settings())
    findings, verification = run_checks(url)
    for f in findings:
        err.print(f"{'warning: ' if f.warning else ''}{f.check}: {f.message}")
    if any(not f.warning for f in findings):
        raise typer.Exit(1)
    console.print(f"schema matches the code ({store.head_revision()}); audit chain intact "
                  f"({verification.entries} entries, head {verification.head[:16]}…)")  # fmt: skip
    if findings:
        raise typer.Exit(2)


@wal_app.command("enable")
def wal_enable() -> None:
    """Archive every WAL segment of the private cluster and take a first base backup."""
    from geogrid.ops.wal import enable, wal_dir

    settings = Settings()
    with console.status("enabling WAL archiving"):
        base = enable(settings)
    console.print(f"WAL archiving on into {wal_dir(settings)}; base backup {base.path.name}")


@wal_app.command("backup")
def wal_backup(
    keep: int | None = typer.Option(None, "--keep", min=1, help="Base backups kept."),
) -> None:
    """Take a new base backup (replay starts from the newest one before the target)."""
    from geogrid.ops.wal import base_backup

    with console.status("taking a base backup"):
        base = base_backup(Settings(), keep=keep)
    console.print(f"base backup {base.path}")


def maintain(
    months: int = typer.Option(3, "--months", min=0, max=120, help="Months of partitions ahead."),
) -> None:
    """The nightly chores: monthly partitions ahead (and rows moved out of DEFAULT
    partitions), the assessment roll-up compacted. The backup timer's service runs it after
    each backup."""
    from geogrid.ops.maintain import maintain as run

    with console.status("maintaining"):
        done = run(store.database_url(Settings()), months_ahead=months)
    console.print(f"partitions created: {', '.join(done.created) or 'none'}")
    for name, rows in done.moved.items():
        console.print(f"moved {rows:,} rows out of a DEFAULT partition into {name}")
    if done.rollup_rows is not None:
        console.print(
            f"assessment roll-up: {done.rollup_rows[0]:,} rows -> {done.rollup_rows[1]:,}"
        )
    if done.blocked:
        err.print(f"[red]months without a partition (a detached table holds the name): "
                  f"{', '.join(done.blocked)}[/red]")  # fmt: skip
        raise typer.Exit(2)


def register(db_app: typer.Typer) -> None:
    """Add the operations commands to ``geogrid db``."""
    db_app.command("backup")(backup)
    db_app.command("backup-key")(backup_key)
    db_app.command("backup-timer")(backup_timer)
    db_app.command("restore")(restore)
    db_app.command("upgrade")(upgrade)
    db_app.command("check")(check)
    db_app.command("maintain")(maintain)
    db_app.add_typer(wal_app, name="wal")
    from geogrid.cli.replica import replica_app

    db_app.add_typer(replica_app, name="replica")
    from geogrid.cli.partitions import partitions_app  # monthly partitions (migration 0023)

    db_app.add_typer(partitions_app, name="partitions")
