"""``geogrid db partitions list|create|detach|drop``: the monthly partitions of the large
tables (audit log, case events, heat rows), see :mod:`geogrid.ops.partitions`.

Registered on ``geogrid db`` by :mod:`geogrid.cli.dbops`.
"""

from __future__ import annotations

import typer
from rich.console import Console

from geogrid import store
from geogrid.settings import Settings

console = Console(highlight=False, soft_wrap=True)

partitions_app = typer.Typer(
    help="Monthly partitions of the audit log, case events and heat rows.", no_args_is_help=True
)

_TABLE = typer.Option(None, "--table", help="audit_log, case_events or heat_daily (default all).")


@partitions_app.command("list")
def list_(table: str | None = _TABLE) -> None:
    """Each partition: its range, rows and size; detached (archivable) ones too."""
    from geogrid.ops.partitions import list_partitions

    url = store.database_url(Settings())
    engine = store.make_engine(url)
    try:
        with engine.connect() as conn:
            found = list_partitions(conn, table)
    finally:
        engine.dispose()
    for p in found:  # one line each (greppable; the range last, it is long)
        state = "attached" if p.attached else "DETACHED"
        console.print(f"{p.name:24} {p.rows:>12,} rows {p.size / 1024:>10,.0f} kB  {state:8}  "
                      f"{p.bounds}")  # fmt: skip
    stray = [p for p in found if p.month is None and p.rows]
    for p in stray:
        console.print(f"warning: {p.rows:,} rows in {p.name}: run `geogrid db partitions create`")


@partitions_app.command("create")
def create(
    months: int = typer.Option(3, "--months", min=0, max=120, help="Months ahead of this one."),
) -> None:
    """Create this month's partitions and the next ones; move rows out of DEFAULT partitions.

    Also done by `geogrid db upgrade` and `geogrid serve`; for a server that runs for
    months, run it monthly from cron.
    """
    from geogrid.ops.partitions import ensure

    url = store.database_url(Settings())
    engine = store.make_engine(url)
    try:
        with engine.begin() as conn:
            done = ensure(conn, months_ahead=months)
    finally:
        engine.dispose()
    console.print(f"partitions created: {', '.join(done.created) or 'none needed'}")
    for name, rows in done.moved.items():
        console.print(f"moved {rows:,} rows from the DEFAULT partition into {name}")
    for name in done.blocked:
        console.print(f"warning: rows of {name[-6:]} stay in DEFAULT: a detached {name} exists "
                      "(export and drop it, or reattach it, then run again)")  # fmt: skip


@partitions_app.command("detach")
def detach(
    before: str = typer.Option(..., "--before", help="Detach months before this one: YYYY-MM."),
    table: str = typer.Option("case_events", "--table", help="case_events or audit_log."),
    export: bool = typer.Option(
        False, "--export", help="Then dump each into GEOGRID_HOME/archive, verify it, drop it."
    ),
) -> None:
    """Detach a table's old month partitions for archiving (rows leave the live table)."""
    from geogrid.ops import partitions

    settings = Settings()
    url = store.database_url(settings)
    engine = store.make_engine(url)
    try:
        with engine.begin() as conn:
            names = partitions.detach(conn, table, before)
    finally:
        engine.dispose()
    console.print(f"detached: {', '.join(names) or 'nothing before ' + before}")
    if export:
        for name in names:
            manifest = partitions.export(settings, url, name)
            partitions.drop(settings, url, name)
            console.print(
                f"{name}: exported and verified ({manifest.with_suffix('.dump')}), dropped"
            )


@partitions_app.command("drop")
def drop(
    name: str = typer.Argument(..., help="A detached partition, e.g. case_events_202401."),
) -> None:
    """Drop a detached partition: only once its export is in GEOGRID_HOME/archive, verified."""
    from geogrid.ops import partitions

    settings = Settings()
    partitions.drop(settings, store.database_url(settings), name)
    console.print(f"{name} dropped (archive: {partitions.archive_dir(settings) / name}.dump)")


@partitions_app.command("export")
def export(
    name: str = typer.Argument(..., help="A detached partition, e.g. case_events_202401."),
) -> None:
    """Dump a detached partition into GEOGRID_HOME/archive and verify the dump (kept in place)."""
    from geogrid.ops import partitions

    settings = Settings()
    manifest = partitions.export(settings, store.database_url(settings), name)
    console.print(f"{name}: exported and verified ({manifest})")


@partitions_app.command("reattach")
def reattach(name: str = typer.Argument(..., help="A detached or restored month table.")) -> None:
    """Make a detached (or restored from its archive) month a partition of its table again."""
    from geogrid.ops import partitions

    engine = store.make_engine(store.database_url(Settings()))
    try:
        with engine.begin() as conn:
            partitions.reattach(conn, name)
    finally:
        engine.dispose()
    console.print(f"{name} attached again")
